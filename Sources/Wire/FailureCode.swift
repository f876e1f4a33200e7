/// Why something failed: the one list of failure codes that trackers send (`ERR CODE …`), peers
/// send each other (REJECT frames) and the peer's shell prints (`FAILURE: CODE …`). The raw value
/// is the code as it appears on the wire and on screen; README.md lists each with its meaning.
public enum FailureCode: String, CaseIterable, Sendable, CustomStringConvertible {
    /// A command or request with the wrong words, values or save location.
    case invalidArguments = "INVALID_ARGUMENTS"
    /// A word the peer's shell does not know.
    case unknownCommand = "UNKNOWN_COMMAND"
    /// The file to share is missing or unreadable, or nobody shares the file asked for.
    case fileNotFound = "FILE_NOT_FOUND"
    /// The `.mtorrent` named is missing or unreadable.
    case mtorrentFileNotFound = "MTORRENT_FILE_NOT_FOUND"
    /// The destination exists already; nothing is overwritten.
    case alreadyExists = "ALREADY_EXISTS"
    /// A `.mtorrent` whose signature or signer does not verify against our CA.
    case signatureInvalid = "SIGNATURE_INVALID"
    /// The access control list does not allow this.
    case accessDenied = "ACCESS_DENIED"
    /// No online peer holds the file.
    case noSeeders = "NO_SEEDERS"
    /// No tracker could be reached (connection refused, timed out, or broke off).
    case trackersUnreachable = "TRACKERS_UNREACHABLE"
    /// A tracker refused our certificate: revoked, expired, from another CA, or of the wrong role.
    case certificateRefused = "CERTIFICATE_REFUSED"
    /// What answered at a tracker's address is not a tracker we trust: another CA, a peer, or a
    /// certificate that does not name the address dialled.
    case trackerNotTrusted = "TRACKER_NOT_TRUSTED"
    /// A download that could not be completed.
    case downloadFailed = "DOWNLOAD_FAILED"
    /// A shared file changed on disk after it was shared.
    case fileChanged = "FILE_CHANGED"
    /// The peer's own share index could not be read or written.
    case stateError = "STATE_ERROR"
    /// No space left on the device.
    case diskFull = "DISK_FULL"
    /// The operating system refused access to a file or folder.
    case permissionDenied = "PERMISSION_DENIED"
    /// Another download is writing the same `.part` file.
    case alreadyRunning = "ALREADY_RUNNING"
    /// The listening address is taken by another program.
    case addressInUse = "ADDRESS_IN_USE"
    /// A request that breaks the protocol's rules.
    case badRequest = "BAD_REQUEST"
    /// Every upload slot is taken; try again later.
    case busy = "BUSY"
    /// More requests queued than the other side allows.
    case tooManyRequests = "TOO_MANY_REQUESTS"
    /// The file was withdrawn from the network; an admin must allow it again.
    case withdrawn = "WITHDRAWN"
    /// A share whose signed header does not parse, is not signed by a valid peer of our CA, or
    /// names another root than the share.
    case proofInvalid = "PROOF_INVALID"
    /// The tracker could not record a change.
    case trackerError = "TRACKER_ERROR"
    /// Over a per-certificate quota of the tracker (requests a second, files announced); slow down.
    case quota = "QUOTA"
    /// The tracker's registry (its database) cannot be reached now; nothing was recorded. Try
    /// again shortly or use another tracker.
    case unavailable = "UNAVAILABLE"

    public var description: String { rawValue }

    /// The code named `text` on the wire, if it is one of ours.
    public init?(wire text: some StringProtocol) {
        self.init(rawValue: String(text))
    }
}
