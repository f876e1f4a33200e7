import FileIO
import Foundation
import NIOConcurrencyHelpers
import Wire

/// One file this peer serves: where the data and its `.mtorrent` are, its layout, the size and
/// modification time it had when shared (a change means the data no longer matches the hashes),
/// and the `.mtorrent`'s signed header, which every announcement to a tracker carries as proof.
public struct ShareEntry: Codable, Sendable, Equatable {
    public var root: String
    public var dataPath: String
    public var mtorrentPath: String
    public var size: UInt64
    public var pieceSize: Int
    public var modifiedSeconds: Int
    public var modifiedNanoseconds: Int
    /// The signed header (base64 in the JSON); absent for a version 1 `.mtorrent` and in an index
    /// written before shares carried proof (it is then read from the `.mtorrent` when needed).
    public var signedHeader: Data?
}

/// The files this peer serves, kept in `STATE/shares.json` so seeding resumes after a restart.
public final class ShareIndex: Sendable {
    private let entries: NIOLockedValueBox<[String: ShareEntry]>
    public let path: String

    public init(stateFolder: String) throws {
        try FileIO.makeFolder(stateFolder, mode: 0o700)
        path = "\(stateFolder)/shares.json"
        var loaded: [String: ShareEntry] = [:]
        if FileIO.exists(path) {
            let bytes = try FileIO.readFile(path, limit: 64 * 1024 * 1024)
            for entry in try JSONDecoder().decode([ShareEntry].self, from: Data(bytes)) { loaded[entry.root] = entry }
        }
        entries = NIOLockedValueBox(loaded)
    }

    public var all: [ShareEntry] { entries.withLockedValue { Array($0.values) }.sorted { $0.root < $1.root } }

    public func entry(for file: FileID) -> ShareEntry? { entries.withLockedValue { $0[file.description] } }

    public func add(_ entry: ShareEntry) throws {
        try update { $0[entry.root] = entry }
    }

    public func remove(_ file: FileID) throws {
        try update { $0[file.description] = nil }
    }

    private func update(_ change: (inout [String: ShareEntry]) -> Void) throws {
        try entries.withLockedValue { entries in
            change(&entries)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try FileIO.replaceAtomically(path, bytes: try encoder.encode(entries.values.sorted { $0.root < $1.root }), mode: 0o600)
        }
    }
}

/// The size and modification time of a file, to notice that it changed.
public struct FileStamp: Equatable, Sendable {
    public let size: UInt64
    public let seconds: Int
    public let nanoseconds: Int

    public init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        self.init(info)
    }

    public init?(fd: Int32) {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return nil }
        self.init(info)
    }

    private init(_ info: stat) {
        size = UInt64(info.st_size)
        seconds = info.st_mtim.tv_sec
        nanoseconds = info.st_mtim.tv_nsec
    }

    public func matches(_ entry: ShareEntry) -> Bool {
        size == entry.size && seconds == entry.modifiedSeconds && nanoseconds == entry.modifiedNanoseconds
    }
}
