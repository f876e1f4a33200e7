import Foundation
import PKI

/// The root hash that names a file on the network: 32 bytes, written as 64 lowercase hex digits.
public struct FileID: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    public init?(hex: some StringProtocol) {
        guard let bytes = Hex.decode(hex) else { return nil }
        self.init(bytes: bytes)
    }

    public var description: String { Hex.encode(bytes) }

    /// The first 12 hex digits: enough to tell files apart in a log line.
    public var short: String { Hex.encode(bytes.prefix(6)) }

    /// How a log line names the file: `name (short hash)`.
    public func label(_ name: String) -> String { "\(name) (\(short))" }
}

/// One request of the tracker protocol: a single line of text (see docs/PROTOCOL.md).
public enum TrackerRequest: Equatable, Sendable {
    /// Announce that the caller holds a file and serves it on `port` of its connection's address;
    /// `proof` is the file's signed header (a version 2 `.mtorrent` up to its signature line),
    /// from which the tracker takes the size, the name and the signer.
    case share(file: FileID, port: UInt16, proof: [UInt8])
    /// Who holds a file.
    case get(file: FileID)
    /// Withdraw: the caller's own entry, or (signer or admin) the file from the whole network.
    case remove(file: FileID, port: UInt16)
    /// An admin lets a withdrawn file be shared again.
    case allow(file: FileID)
    /// The caller serving on `port` is still there.
    case heartbeat(port: UInt16)
    /// The caller serving on `port` is going away: drop all its entries.
    case leave(port: UInt16)
    /// Send the CA's revocation list if the tracker's is newer than number `newerThan` (the one
    /// the caller holds); peers poll with it, so a revocation reaches them without a signal.
    case revocationList(newerThan: Int)

    /// Longest request line accepted: room for a SHARE carrying the base64 of a signed header of
    /// up to 8 KiB (`SignedHeader.maximumBytes`); every other request is far shorter.
    public static let maximumLineLength = 12 * 1024

    public init(line: String) throws(WireError) {
        // Split at the byte of a space rather than between characters: a long line costs no
        // grapheme breaking.
        let words = line.utf8.split(separator: UInt8(ascii: " "), maxSplits: 4, omittingEmptySubsequences: false).map(Substring.init)
        guard let verb = words.first else { throw .malformed("an empty request") }
        func file(_ index: Int) throws(WireError) -> FileID {
            guard words.count > index, let file = FileID(hex: words[index]) else { throw .malformed("a file must be named by its 64-digit root hash") }
            return file
        }
        func port(_ index: Int) throws(WireError) -> UInt16 {
            guard words.count > index, let port = UInt16(words[index]), port > 0, words[index].first != "0" else {
                throw .malformed("a port must be a number from 1 to 65535")
            }
            return port
        }
        func expect(_ count: Int) throws(WireError) {
            guard words.count == count else { throw .malformed("'\(verb)' takes \(count - 1) argument(s)") }
        }
        switch verb {
        case "SHARE":
            guard words.count == 4 else {
                throw .malformed("'SHARE' takes 3 arguments: <root> <port> <signed header in base64>; a share without the signed header is refused")
            }
            let encoded = words[3]
            guard let proof = Data(base64Encoded: String(encoded)).map(Array.init), !proof.isEmpty,
                  Data(proof).base64EncodedString() == encoded
            else { throw .malformed("the signed header must be canonical base64 (with padding, no line breaks)") }
            self = .share(file: try file(1), port: try port(2), proof: proof)
        case "GET":
            try expect(2)
            self = .get(file: try file(1))
        case "REMOVE":
            try expect(3)
            self = .remove(file: try file(1), port: try port(2))
        case "ALLOW":
            try expect(2)
            self = .allow(file: try file(1))
        case "HEARTBEAT":
            try expect(2)
            self = .heartbeat(port: try port(1))
        case "LEAVE":
            try expect(2)
            self = .leave(port: try port(1))
        case "CRL":
            try expect(2)
            guard (1...18).contains(words[1].utf8.count), words[1].utf8.allSatisfy({ (0x30...0x39).contains($0) }), let number = Int(words[1]) else {
                throw .malformed("'CRL' takes the number of the revocation list the caller holds")
            }
            self = .revocationList(newerThan: number)
        default:
            throw .malformed("unknown request '\(verb.prefix(20))'")
        }
    }

    /// The request as one line, without its line feed.
    public var line: String {
        switch self {
        case .share(let file, let port, let proof): return "SHARE \(file) \(port) \(Data(proof).base64EncodedString())"
        case .get(let file): return "GET \(file)"
        case .remove(let file, let port): return "REMOVE \(file) \(port)"
        case .allow(let file): return "ALLOW \(file)"
        case .heartbeat(let port): return "HEARTBEAT \(port)"
        case .leave(let port): return "LEAVE \(port)"
        case .revocationList(let number): return "CRL \(number)"
        }
    }
}

/// A peer that holds a file, as the tracker recorded it: where it serves and who it proved to be.
public struct HolderRecord: Equatable, Sendable {
    /// `host:port` (the host is the address the peer connected from, never one it claimed).
    public let address: String
    public let name: String
    /// SHA-256 fingerprint of the holder's certificate, lowercase hex.
    public let fingerprint: String

    public init(address: String, name: String, fingerprint: String) {
        self.address = address
        self.name = name
        self.fingerprint = fingerprint
    }
}

/// The tracker's answer: `OK …`, a list of holders, or `ERR CODE …`.
public enum TrackerResponse: Equatable, Sendable {
    case ok(String)
    case holders(size: UInt64, name: String, [HolderRecord])
    case failure(code: FailureCode, message: String)
    /// The CA's revocation list in DER, newer than the one the caller said it holds: `CRL <base64>`.
    /// Nothing in it is trusted until the caller checks it (see `TrustStore.adopting`).
    case revocationList([UInt8])

    /// Most holders one answer lists.
    public static let maximumHolders = 200
    /// Largest revocation list a tracker hands out (in DER; some 50,000 revoked certificates).
    public static let maximumRevocationListBytes = 2 * 1024 * 1024
    /// Longest answer line: a `CRL` line carrying the largest revocation list.
    public static let maximumLineLength = 4 + (maximumRevocationListBytes + 2) / 3 * 4

    /// The answer as lines, each without its line feed.
    public var lines: [String] {
        switch self {
        case .ok(let message): return ["OK \(message)"]
        case .failure(let code, let message): return ["ERR \(code) \(message)"]
        case .revocationList(let der): return ["CRL \(Data(der).base64EncodedString())"]
        case .holders(let size, let name, let records):
            return ["HOLDERS \(records.count) \(size) \(name)"] + records.map { "HOLDER \($0.address) \($0.name) \($0.fingerprint)" }
        }
    }
}

/// Reads a ``TrackerResponse`` line by line (a holders answer spans several lines).
public struct TrackerResponseReader {
    private var pending: (count: Int, size: UInt64, name: String, records: [HolderRecord])?

    public init() {}

    /// Feeds one line; returns the response once it is complete.
    public mutating func consume(_ line: String) throws(WireError) -> TrackerResponse? {
        if var partial = pending {
            let words = line.split(separator: " ")
            guard words.count == 4, words[0] == "HOLDER" else { throw .malformed("expected a HOLDER line") }
            partial.records.append(HolderRecord(address: String(words[1]), name: String(words[2]), fingerprint: String(words[3])))
            if partial.records.count == partial.count {
                pending = nil
                return .holders(size: partial.size, name: partial.name, partial.records)
            }
            pending = partial
            return nil
        }
        if line.hasPrefix("OK ") { return .ok(String(line.dropFirst(3))) }
        if line.hasPrefix("CRL ") {
            let encoded = line.dropFirst(4)
            guard encoded.utf8.count <= TrackerResponse.maximumLineLength,
                  let der = Data(base64Encoded: String(encoded)).map(Array.init), !der.isEmpty,
                  der.count <= TrackerResponse.maximumRevocationListBytes
            else { throw .malformed("a CRL answer that is not a base64 revocation list of at most \(TrackerResponse.maximumRevocationListBytes) bytes") }
            return .revocationList(der)
        }
        if line.hasPrefix("ERR ") {
            let words = line.dropFirst(4).split(separator: " ", maxSplits: 1)
            guard let word = words.first, let code = FailureCode(wire: word) else { throw .malformed("an error answer without a known code") }
            return .failure(code: code, message: words.count > 1 ? String(words[1]) : "")
        }
        if line.hasPrefix("HOLDERS ") {
            let words = line.split(separator: " ", maxSplits: 3)
            guard words.count == 4, let count = Int(words[1]), (0...TrackerResponse.maximumHolders).contains(count), let size = UInt64(words[2]) else {
                throw .malformed("a malformed HOLDERS line")
            }
            if count == 0 { return .holders(size: size, name: String(words[3]), []) }
            pending = (count, size, String(words[3]), [])
            return nil
        }
        throw .malformed("an answer that is neither OK, ERR, HOLDERS nor CRL")
    }
}
