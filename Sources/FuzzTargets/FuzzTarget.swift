import FileIO
import MTorrentFormat
import NIOCore
import PKI
import Peer
import Pieces
import Tracker
import Wire

/// The parsers that read untrusted input, each wrapped as a fuzz target: any input must end in a
/// value or a typed error, never a crash, and whatever is accepted must read back the same after
/// it is written out. `mtfuzz` runs them under libFuzzer; the tests replay the committed corpus.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// `.mtorrent` text (`MTorrentParser`) and signed headers (`SignedHeader`).
    case mtorrent
    /// A byte stream to the tracker: lines (`LineFrameDecoder`) read as requests, and as answers;
    /// and its lines read as lines of the tracker's journal (`seeders.txt`).
    case tracker
    /// A byte stream between peers (`PeerFrameDecoder`), with bitfields read for a file's pieces.
    case peer
    /// An access control list (`AccessControlList`).
    case acl
    /// A tracker or peer configuration file (`ConfigFile`).
    case config
    /// Lines typed at the peer's shell (`ShellCommand`, `ShellWords`).
    case shell
    /// A certificate signing request as `mtca sign` reads it (`SigningRequest`).
    case request

    /// Feeds one input to the parser; stops the process if an invariant breaks.
    public func run(_ bytes: [UInt8]) {
        switch self {
        case .mtorrent: Self.mtorrent(bytes)
        case .tracker: Self.tracker(bytes)
        case .peer: Self.peer(bytes)
        case .acl: _ = try? AccessControlList(text: String(decoding: bytes, as: UTF8.self), source: "fuzz input")
        case .config: Self.config(bytes)
        case .shell: Self.shell(bytes)
        case .request: Self.request(bytes)
        }
    }

    private static func mtorrent(_ bytes: [UInt8]) {
        if let header = try? SignedHeader.parse(bytes) {
            precondition(header.bytes == bytes, "an accepted signed header is not its input")
        }
        guard let torrent = try? MTorrentParser.parse(bytes) else { return }
        precondition((try? torrent.serialized()) == bytes, "an accepted .mtorrent does not write back byte for byte")
        precondition(torrent.pieceHashes.count == torrent.layout.pieceCount, "piece hashes and layout disagree")
        if let header = torrent.signedHeader {
            precondition((try? SignedHeader.parse(header.bytes)) == header, "a file's signed header does not read back the same")
        }
    }

    private static func tracker(_ bytes: [UInt8]) {
        var buffer = ByteBuffer(bytes: bytes)
        let decoder = LineFrameDecoder(maximumLength: TrackerRequest.maximumLineLength)
        var answers = TrackerResponseReader()
        while let line = try? decoder.nextLine(from: &buffer) {
            precondition(line.utf8.count <= TrackerRequest.maximumLineLength, "a line over the limit was accepted")
            if let request = try? TrackerRequest(line: line) {
                precondition((try? TrackerRequest(line: request.line)) == request, "a request does not read back the same")
            }
            if (try? answers.consume(line)) == nil { answers = TrackerResponseReader() }
        }
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            if let readsBack = JournalLineCheck.readsBack(Array(line)) { precondition(readsBack, "a journal line does not read back the same") }
        }
    }

    private static func peer(_ bytes: [UInt8]) {
        var buffer = ByteBuffer(bytes: bytes)
        while let frame = try? PeerFrameDecoder.nextFrame(from: &buffer) {
            var encoded = ByteBuffer()
            frame.encode(into: &encoded)
            precondition((try? PeerFrameDecoder.nextFrame(from: &encoded)) == frame, "a frame does not read back the same")
            if case .bitfield(let bits) = frame {
                for count in [bits.count * 8 - 7, bits.count * 8] where count >= 0 {
                    if let field = Bitfield(bytes: bits, count: count) { precondition(field.bytes == bits && field.heldCount <= count) }
                }
            }
        }
    }

    private static func config(_ bytes: [UInt8]) {
        let keys = PeerConfiguration.configFileKeys.union(TrackerConfiguration.configFileKeys)
        guard let file = try? ConfigFile(text: String(decoding: bytes, as: UTF8.self), path: "fuzz input", knownKeys: keys) else { return }
        for key in keys {
            _ = file.string(key)
            _ = try? file.integer(key, in: 0...Int(Int32.max))
        }
    }

    /// `word` in single quotes, each `'` in it written `'\''`. Scalar by scalar: a quote followed
    /// by a combining mark is one Character, which splitting by Characters would miss.
    private static func quotedForTheShell(_ word: String) -> String {
        var quoted = String.UnicodeScalarView()
        quoted.append("'")
        for scalar in word.unicodeScalars {
            if scalar == "'" { quoted.append(contentsOf: #"'\''"#.unicodeScalars) } else { quoted.append(scalar) }
        }
        quoted.append("'")
        return String(quoted)
    }

    private static func request(_ bytes: [UInt8]) {
        guard let request = try? SigningRequest(pemEncoded: String(decoding: bytes, as: UTF8.self)) else { return }
        let again = try? SigningRequest(pemEncoded: request.pemEncoded)
        precondition(
            again?.name == request.name && again?.role == request.role && again?.groups == request.groups
                && again?.dnsNames == request.dnsNames && again?.ipAddresses == request.ipAddresses && again?.publicKey == request.publicKey,
            "an accepted request does not read back the same"
        )
    }

    private static func shell(_ bytes: [UInt8]) {
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false) {
            guard let command = try? ShellCommand.parse(String(line)) else { continue }
            _ = command.paths(relativeTo: "/fuzz")
            guard let words = try? ShellWords.split(String(line)) else { preconditionFailure("a command was read from words that do not split") }
            let quoted = words.map(quotedForTheShell).joined(separator: " ")
            precondition((try? ShellWords.split(quoted)) == words, "words quoted again do not split back the same")
            if quoted.utf8.count <= ShellCommand.maximumLineBytes {
                precondition((try? ShellCommand.parse(quoted)) == command, "a command quoted again does not read back the same")
            }
        }
    }
}
