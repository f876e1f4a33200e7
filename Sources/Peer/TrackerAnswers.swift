import MTorrentFormat
import Wire

/// What every tracker answered to one request (or why it gave no answer), in the order the
/// trackers are configured, and how a command words the outcome.
struct TrackerAnswers {
    /// One tracker's answer, or the reason there was none.
    struct Answer {
        let tracker: TrackerAddress
        let result: Result<TrackerResponse, TrackerUnreachable>
    }

    let answers: [Answer]

    /// The trackers that answered OK.
    var accepted: [TrackerAddress] {
        answers.compactMap { if case .success(.ok) = $0.result { $0.tracker } else { nil } }
    }

    /// The trackers that answered with a refusal, with its code and sentence.
    var refusals: [(tracker: TrackerAddress, code: FailureCode, message: String)] {
        answers.compactMap { answer in
            if case .success(.failure(let code, let message)) = answer.result { (answer.tracker, code, message) } else { nil }
        }
    }

    /// The trackers that gave no answer, and why.
    var problems: [TrackerUnreachable] {
        answers.compactMap { if case .failure(let problem) = $0.result { problem } else { nil } }
    }

    /// The failure of a command no tracker accepted: a tracker's own refusal if there is one,
    /// else the most telling reason none answered. The sentence names every tracker's outcome.
    var failure: CommandFailure {
        let code = refusals.first?.code
            ?? problems.lazy.map(\.problem.code).first { $0 != .trackersUnreachable }
            ?? .trackersUnreachable
        return CommandFailure(code, outcomes.joined(separator: "; "))
    }

    /// One clause per tracker saying what it answered.
    var outcomes: [String] {
        answers.map { answer in
            switch answer.result {
            case .success(.ok(let message)): return "tracker \(answer.tracker): \(message)"
            case .success(.holders(_, _, let records)): return "tracker \(answer.tracker): \(records.count) holder(s)"
            case .success(.revocationList(let der)): return "tracker \(answer.tracker): a revocation list of \(der.count) bytes"
            case .success(.failure(let code, let message)): return "tracker \(answer.tracker) answered \(code) \(message)"
            case .failure(let problem): return problem.description
            }
        }
    }
}
