import Foundation
import NIOConcurrencyHelpers

/// What a terminal shows besides finished lines: the one progress line drawn on standard error
/// and the prompt on standard output. Answers, progress and prompt are written under one lock,
/// so two lines never mix and an answer never lands in the middle of a progress line.
enum Screen {
    struct State {
        /// The progress line allowed to draw: the first to draw of those still running.
        var progressOwner: ObjectIdentifier?
        /// Whether standard error ends in a drawn progress line (no newline yet).
        var progressShown = false
        /// Shown again after every answer while set.
        var prompt: String?
        /// Whether standard output ends in the prompt (nothing typed since it was shown).
        var promptShown = false
    }

    static let state = NIOLockedValueBox(State())
    /// Back to the start of the line and erase it (ANSI).
    static let eraseLine = "\r\u{1B}[K"

    static func writeError(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    static func writeOutput(_ text: String) {
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}
