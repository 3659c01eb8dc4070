// swift-tools-version:6.2
import PackageDescription

let package = Package(
    name: "mobvibe-worker",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "worker", targets: ["worker"]),
        // Starts a job's command inside its limits (control groups, rlimits, JOB_USER); installed
        // beside `worker`, which finds it there.
        .executable(name: "worker-launch", targets: ["worker-launch"]),
        .library(name: "WorkerCore", targets: ["WorkerCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/vapor/sqlite-nio", from: "1.13.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/vapor/jwt-kit", from: "5.7.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        .target(
            name: "WorkerCore",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "WorkerSQLite",
            dependencies: [
                "WorkerCore",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "WorkerPostgres",
            dependencies: [
                "WorkerCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The one system call Swift cannot make itself (variadic prctl): the worker's own protection.
        .target(name: "CProcessControl"),
        // A job command's first step (C): joins its control groups, sets its rlimits, drops to
        // JOB_USER, execs the command. Linked statically: a C target still gets the Swift
        // runtime linked in, and loading it as a shared library cost 3 ms of every command's start.
        .executableTarget(name: "worker-launch", linkerSettings: [.unsafeFlags(["-static-executable"])]),
        // How a job's command runs: process, sandbox, limits, accounting (and its workspace).
        .target(
            name: "WorkerExecution",
            dependencies: [
                "WorkerCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        // The operator's web dashboard (/ui): pages rendered on the server from Mustache templates
        // compiled into the binary, its session cookie and CSRF tokens.
        .target(
            name: "WorkerDashboard",
            dependencies: [
                "WorkerCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "WorkerService",
            dependencies: [
                "CProcessControl",
                "WorkerCore",
                "WorkerDashboard",
                "WorkerExecution",
                "WorkerSQLite",
                "WorkerPostgres",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        .executableTarget(
            name: "worker",
            dependencies: [
                "WorkerService",
                "WorkerCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(
            name: "WorkerTestSupport",
            dependencies: [
                "WorkerCore", "WorkerSQLite",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/WorkerTestSupport"
        ),
        .testTarget(
            name: "WorkerCoreTests",
            dependencies: [
                "WorkerCore", "WorkerSQLite", "WorkerTestSupport",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "WorkerPostgresTests",
            dependencies: [
                "WorkerPostgres", "WorkerCore", "WorkerTestSupport", .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .testTarget(
            name: "WorkerSQLiteTests",
            dependencies: ["WorkerSQLite", "WorkerCore", "WorkerTestSupport", .product(name: "NIOPosix", package: "swift-nio")]),
        // The fixtures (job scripts, .env files) are read from the source tree by path (#filePath),
        // so they are excluded rather than copied as resources.
        .testTarget(
            name: "WorkerServiceTests",
            dependencies: [
                "WorkerService", "WorkerCore", "WorkerExecution", "WorkerTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Configuration", package: "swift-configuration"),
            ],
            exclude: ["Fixtures"]
        ),
        // Real child processes; the job scripts in Fixtures/ are read from the source tree by path.
        .testTarget(
            name: "WorkerExecutionTests",
            dependencies: ["WorkerExecution", "WorkerCore", "WorkerSQLite", "WorkerTestSupport", "worker-launch"],
            exclude: ["Fixtures"]
        ),
        // End-to-end tests of the built `worker` binary; depending on it makes `swift test` build it.
        .testTarget(
            name: "WorkerTests",
            dependencies: ["worker", "worker-launch", "WorkerTestSupport", .product(name: "JWTKit", package: "jwt-kit")],
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
