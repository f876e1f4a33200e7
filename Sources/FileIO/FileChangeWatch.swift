#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Tells whether any of a few files changed since it last looked — replaced, rewritten, created or
/// deleted — by comparing each file's inode, size and modification time. Servers poll it to pick
/// up a renewed certificate or a new CRL without being signalled.
public struct FileChangeWatch: Sendable {
    /// What identifies one version of a file; nil while the file does not exist.
    private struct Stamp: Equatable, Sendable {
        let device: UInt64
        let inode: UInt64
        let size: Int64
        let seconds: Int
        let nanoseconds: Int
    }

    public let paths: [String]
    private var stamps: [Stamp?]

    /// Watches `paths`, taking their present state as the starting point.
    public init(paths: [String]) {
        self.paths = paths
        stamps = paths.map(Self.stamp)
    }

    /// Whether any file changed since the last look (or since the watch began); each change is
    /// reported once.
    public mutating func changed() -> Bool {
        let now = paths.map(Self.stamp)
        defer { stamps = now }
        return now != stamps
    }

    private static func stamp(_ path: String) -> Stamp? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        #if canImport(Glibc)
        let modified = status.st_mtim
        #else
        let modified = status.st_mtimespec
        #endif
        return Stamp(
            device: UInt64(status.st_dev), inode: UInt64(status.st_ino), size: Int64(status.st_size),
            seconds: Int(modified.tv_sec), nanoseconds: Int(modified.tv_nsec)
        )
    }
}
