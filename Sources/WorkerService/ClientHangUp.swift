import NIOCore
import Synchronization

/// Learns, while a long answer is being written (an event stream), that its client has closed
/// the connection or its sending side.
///
/// Hummingbird keeps a half-closed connection open and reads nothing of it while the answer is
/// written, so a stream learnt of its client's going only when a write failed: the second
/// keep-alive after it, 15 to 30 s later. Meanwhile the stream held its user's place (8 at
/// most), and a phone that reconnected a few times in a row was answered `429`, after which a
/// browser's `EventSource` stops reconnecting for good. A handler first in the connection's
/// pipeline sees the end of its input (`ChannelEvent.inputClosed`, or the channel closing)
/// as it is read, and calls `onHangUp`.
final class ClientHangUp: Sendable {
    private let channel: any Channel
    private let name: String
    private let hungUp: Atomic<Bool>

    /// Whether the client has gone.
    var happened: Bool { hungUp.load(ordering: .acquiring) }

    private init(channel: any Channel, name: String) {
        self.channel = channel
        self.name = name
        self.hungUp = Atomic(false)
    }

    /// Watches `channel` until ``stop()``; `onHangUp` runs once, on the channel's event loop.
    /// `nil` when the watch could not be set up (the stream then learns it by its writes).
    static func watch(_ channel: any Channel, onHangUp: @escaping @Sendable () -> Void) async -> ClientHangUp? {
        let watch = ClientHangUp(channel: channel, name: "mobvibe-hang-up-\(UInt64.random(in: 0 ... .max))")
        let report: @Sendable () -> Void = { [watch] in
            if !watch.hungUp.exchange(true, ordering: .acquiringAndReleasing) { onHangUp() }
        }
        do {
            try await channel.eventLoop.submit { [name = watch.name] in
                try channel.pipeline.syncOperations.addHandler(Handler(report: report), name: name, position: .first)
                // Gone before the watch began.
                if !channel.isActive { report() }
            }.get()
        } catch {
            return nil
        }
        return watch
    }

    /// Ends the watch (the connection may serve further requests).
    func stop() {
        channel.pipeline.removeHandler(name: name, promise: nil)
    }

    private final class Handler: ChannelInboundHandler, RemovableChannelHandler {
        typealias InboundIn = ByteBuffer
        typealias InboundOut = ByteBuffer
        let report: @Sendable () -> Void

        init(report: @escaping @Sendable () -> Void) {
            self.report = report
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? ChannelEvent, event == .inputClosed { report() }
            context.fireUserInboundEventTriggered(event)
        }

        func channelInactive(context: ChannelHandlerContext) {
            report()
            context.fireChannelInactive()
        }
    }
}
