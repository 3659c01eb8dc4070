import Configuration

enum EnvironmentVariablesProviderFixture {
    static func make(_ environment: [String: String]) -> EnvironmentVariablesProvider {
        EnvironmentVariablesProvider(environmentVariables: environment)
    }
}
