import Foundation
import Synchronization

/// The events of one attempt of a job: numbered on from the job's last stored event, bounded
/// (`JOB_EVENT_MAX_BYTES` an event, `JOB_EVENTS_LIMIT` an attempt), handed to the
/// ``JobEventRecorder`` that writes them.
///
/// Status events (the worker's reports) are never limited: a reader always learns how the
/// attempt ended.
public final class JobEventStream: Sendable {
    /// The bounds on one attempt's events.
    public struct Limits: Sendable, Hashable {
        /// The most bytes one event's text may have; a longer one is cut, with a marker.
        public var maximumEventBytes: Int
        /// The most events (status events aside) one attempt may store; then one `truncated`
        /// event, and the rest are only counted.
        public var eventsPerAttempt: Int

        public init(maximumEventBytes: Int = 65_536, eventsPerAttempt: Int = 10_000) {
            self.maximumEventBytes = maximumEventBytes
            self.eventsPerAttempt = eventsPerAttempt
        }
    }

    private struct State {
        var lastSequence: Int64
        var limited = 0
        var dropped = 0
        var lastTicket: UInt64 = 0
        var usage = JobUsage.zero
    }

    let lease: Lease
    public let limits: Limits
    private let recorder: JobEventRecorder
    private let state: Mutex<State>
    /// The claim's `claimed` event, which the attempt's own events number on from.
    private let claimedSequence: Int64

    init(lease: Lease, lastSequence: Int64, limits: Limits, recorder: JobEventRecorder) {
        self.lease = lease
        self.claimedSequence = lastSequence
        self.limits = limits
        self.recorder = recorder
        self.state = Mutex(State(lastSequence: lastSequence))
    }

    /// The next sequence number; called by the recorder as it queues the event, so that events
    /// are queued (and so written) in sequence order.
    func takeSequence() -> Int64 {
        state.withLock { state in
            state.lastSequence += 1
            return state.lastSequence
        }
    }

    /// Adds to what this attempt spent (tokens and cost an agent reported); stored with the
    /// outcome, summed into the job's `input_tokens`, `output_tokens` and `cost_usd`.
    public func addUsage(_ usage: JobUsage) {
        state.withLock { $0.usage = $0.usage + usage }
    }

    /// What this attempt spent so far.
    public var usage: JobUsage { state.withLock { $0.usage } }

    /// Events past the limit this attempt, only counted.
    public var droppedEvents: Int { state.withLock { $0.dropped } }

    /// Emits an event whose data is `json`, a JSON object. An object over the size bound is
    /// stored as an `output` event with its text cut.
    public func emit(_ kind: JobEvent.Kind, json: String) async {
        guard json.utf8.count <= limits.maximumEventBytes else {
            await emit(.output, text: json)
            return
        }
        await queue(kind, data: json)
    }

    /// Emits `{"text": text}`: cut to the size bound with a marker, NUL bytes replaced (the
    /// database stores no NUL in JSON).
    public func emit(_ kind: JobEvent.Kind, text: String) async {
        await emit(kind, text: text, cutBytes: 0, changed: false)
    }

    /// Emits `{"text": ...}` from a line of a program's output: invalid UTF-8 replaced (and
    /// counted), `cutBytes` (what was not kept of a longer line) noted with a marker.
    public func emit(_ kind: JobEvent.Kind, utf8 bytes: [UInt8], cutBytes: Int) async {
        if let text = String(validating: bytes, as: UTF8.self) {
            await emit(kind, text: text, cutBytes: cutBytes, changed: false)
        } else {
            await emit(kind, text: String(decoding: bytes, as: UTF8.self), cutBytes: cutBytes, changed: true)
        }
    }

    private func emit(_ kind: JobEvent.Kind, text: String, cutBytes: Int, changed: Bool) async {
        var text = text
        var changed = changed || cutBytes > 0
        var cut = cutBytes
        if text.utf8.contains(0) {
            text = text.replacingOccurrences(of: "\0", with: "\u{FFFD}")
            changed = true
        }
        let room = max(limits.maximumEventBytes - 64, 16)
        let size = text.utf8.count
        if size > room {
            // Cut at a character boundary at or before `room` bytes.
            var end = text.utf8.index(text.utf8.startIndex, offsetBy: room)
            while end > text.startIndex, end.samePosition(in: text.unicodeScalars) == nil { end = text.utf8.index(before: end) }
            cut += size - text.utf8.distance(from: text.startIndex, to: end)
            text = String(text[..<end])
            changed = true
        }
        if cut > 0 { text += " [cut: \(cut) more bytes]" }
        if changed { WorkerMetrics.shared.eventReplaced() }
        var data: [UInt8] = []
        data.reserveCapacity(text.utf8.count + 12)
        data.append(contentsOf: #"{"text":"#.utf8)
        JSONText.appendString(text, to: &data)
        data.append(UInt8(ascii: "}"))
        await queue(kind, data: String(decoding: data, as: UTF8.self))
    }

    /// Emits a `status` event: `{"status": status, ...fields}` (field values are JSON as given),
    /// e.g. `started` when a handler's agent process has started.
    public func status(_ status: String, _ fields: KeyValuePairs<String, String> = [:]) async {
        await queue(.status, data: Self.statusData(status, fields))
    }

    /// `{"status": status, ...fields}` (field values are JSON as given).
    static func statusData(_ status: String, _ fields: KeyValuePairs<String, String> = [:]) -> String {
        var data: [UInt8] = Array(#"{"status":"#.utf8)
        JSONText.appendString(status, to: &data)
        for (key, value) in fields {
            data.append(UInt8(ascii: ","))
            JSONText.appendString(key, to: &data)
            data.append(UInt8(ascii: ":"))
            data.append(contentsOf: value.utf8)
        }
        data.append(UInt8(ascii: "}"))
        return String(decoding: data, as: UTF8.self)
    }

    /// The ending status event of the attempt, numbered after every event emitted so far; it is
    /// stored with the outcome (``JobCompletion/event``).
    ///
    /// - Parameter alwaysChecked: name the event it follows even when the attempt numbered none
    ///   of its own (an outcome that gives its attempt number back: a write of it made again
    ///   after this worker claimed the job again, its first answer lost, then cannot apply to
    ///   the new run, whose `claimed` event is later).
    func finalEvent(_ status: String, _ fields: KeyValuePairs<String, String>, alwaysChecked: Bool = false) -> JobCompletion.FinalEvent {
        // An attempt that numbered no event of its own follows its claim's `claimed` event,
        // which cannot be missing while the lease holds: nothing to check (a probe saved per job).
        let sequence = takeSequence()
        let numberedEvents = sequence - 1 > claimedSequence
        return JobCompletion.FinalEvent(
            sequence: sequence, data: Self.statusData(status, fields), follows: numberedEvents || alwaysChecked ? sequence - 1 : 0)
    }

    /// Returns once every event of this attempt emitted so far is written (or given up on).
    func written() async {
        let ticket = state.withLock { $0.lastTicket }
        guard ticket > 0 else { return }
        await recorder.written(through: ticket)
    }

    private func queue(_ kind: JobEvent.Kind, data: String) async {
        if kind != .status {
            let admitted = state.withLock { state -> Bool? in
                state.limited += 1
                if state.limited <= limits.eventsPerAttempt { return true }
                state.dropped += 1
                return state.limited == limits.eventsPerAttempt + 1 ? false : nil
            }
            switch admitted {
            case true?:
                break
            case false?:
                // The first event past the limit: one `truncated` event in its place (none at
                // a limit of 0, "status events only").
                WorkerMetrics.shared.eventsDropped(1)
                if limits.eventsPerAttempt > 0 { await record(.truncated, data: #"{"limit":\#(limits.eventsPerAttempt)}"#) }
                return
            case nil:
                WorkerMetrics.shared.eventsDropped(1)
                return
            }
        }
        await record(kind, data: data)
    }

    private func record(_ kind: JobEvent.Kind, data: String) async {
        guard let ticket = await recorder.append(to: self, kind: kind, data: data) else { return }
        state.withLock { state in state.lastTicket = max(state.lastTicket, ticket) }
    }
}
