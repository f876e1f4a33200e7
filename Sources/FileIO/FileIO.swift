#if canImport(Glibc)
import Glibc

private let systemRead = Glibc.read
private let systemWrite = Glibc.write
#elseif canImport(Darwin)
import Darwin

private let systemRead = Darwin.read
private let systemWrite = Darwin.write
#endif

/// A failed file-system operation, with the path and the system's reason, phrased for a person.
public struct FileIOError: Error, CustomStringConvertible, Equatable {
    /// What went wrong, as a stable value tests and callers can compare.
    public enum Kind: Equatable, Sendable {
        case notFound
        case alreadyExists
        case tooLarge(limit: Int)
        case notRegularFile
        case system(errno: Int32)
    }

    public let kind: Kind
    public let path: String
    public let operation: String

    public init(_ kind: Kind, path: String, operation: String) {
        self.kind = kind
        self.path = path
        self.operation = operation
    }

    public static func fromErrno(_ code: Int32, path: String, operation: String) -> FileIOError {
        switch code {
        case ENOENT: return FileIOError(.notFound, path: path, operation: operation)
        case EEXIST: return FileIOError(.alreadyExists, path: path, operation: operation)
        default: return FileIOError(.system(errno: code), path: path, operation: operation)
        }
    }

    public var description: String {
        switch kind {
        case .notFound: return "cannot \(operation) \(path): no such file or directory"
        case .alreadyExists: return "cannot \(operation) \(path): it already exists"
        case .tooLarge(let limit): return "cannot \(operation) \(path): larger than the limit of \(limit) bytes"
        case .notRegularFile: return "cannot \(operation) \(path): not a regular file"
        case .system(let code): return "cannot \(operation) \(path): \(String(cString: strerror(code)))"
        }
    }
}

/// Small, careful file operations: bounded reads, exclusive creation with a mode, and
/// atomic replacement (temporary file, fsync, rename, fsync of the folder).
public enum FileIO {
    /// Reads a whole regular file, refusing it as soon as it proves larger than `limit` bytes.
    public static func readFile(_ path: String, limit: Int) throws(FileIOError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .fromErrno(errno, path: path, operation: "read") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .fromErrno(errno, path: path, operation: "read") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw FileIOError(.notRegularFile, path: path, operation: "read") }
        guard info.st_size <= limit else { throw FileIOError(.tooLarge(limit: limit), path: path, operation: "read") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(info.st_size))
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .fromErrno(errno, path: path, operation: "read")
            }
            if n == 0 { return bytes }
            bytes.append(contentsOf: chunk[..<n])
            if bytes.count > limit { throw FileIOError(.tooLarge(limit: limit), path: path, operation: "read") }
        }
    }

    /// Reads a whole regular file as UTF-8 text, refusing it if it is larger than `limit` bytes.
    public static func readText(_ path: String, limit: Int) throws(FileIOError) -> String {
        String(decoding: try readFile(path, limit: limit), as: UTF8.self)
    }

    /// Creates `path` with `mode`, failing if anything already exists there, and writes `bytes` durably.
    public static func createExclusive(_ path: String, bytes: some Collection<UInt8>, mode: mode_t) throws(FileIOError) {
        try createExclusive(path, chunks: CollectionOfOne(Array(bytes)), mode: mode)
    }

    /// Creates `path` with `mode`, failing if anything already exists there, and writes `chunks`
    /// one after the other, durably (a large file never has to be held in memory whole).
    public static func createExclusive(_ path: String, chunks: some Sequence<[UInt8]>, mode: mode_t) throws(FileIOError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw .fromErrno(errno, path: path, operation: "create") }
        do throws(FileIOError) {
            // The umask may have narrowed the mode; it must never widen it, but make it exact.
            guard fchmod(fd, mode) == 0 else { throw FileIOError.fromErrno(errno, path: path, operation: "create") }
            for chunk in chunks { try writeAll(fd, chunk, path: path) }
            guard fsync(fd) == 0 else { throw FileIOError.fromErrno(errno, path: path, operation: "sync") }
        } catch {
            close(fd)
            unlink(path)
            throw error
        }
        close(fd)
        try syncFolder(of: path)
    }

    /// Replaces `path` atomically: a reader sees either the old content or the new, never a mix.
    public static func replaceAtomically(_ path: String, bytes: some Collection<UInt8>, mode: mode_t) throws(FileIOError) {
        try replaceAtomically(path, chunks: CollectionOfOne(Array(bytes)), mode: mode)
    }

    /// Replaces `path` atomically with `chunks` written one after the other.
    public static func replaceAtomically(_ path: String, chunks: some Sequence<[UInt8]>, mode: mode_t) throws(FileIOError) {
        let temporary = "\(path).tmp-\(getpid())"
        unlink(temporary)
        try createExclusive(temporary, chunks: chunks, mode: mode)
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw .fromErrno(code, path: path, operation: "replace")
        }
        try syncFolder(of: path)
    }

    /// Creates a folder (and its parents) with `mode` if it does not exist yet.
    public static func makeFolder(_ path: String, mode: mode_t) throws(FileIOError) {
        var partial = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            partial += "/" + component
            if mkdir(partial, mode) != 0, errno != EEXIST {
                throw .fromErrno(errno, path: partial, operation: "create folder")
            }
        }
    }

    /// Whether anything (file, folder, dangling link) exists at `path`.
    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// The permission bits of `path`.
    public static func mode(of path: String) throws(FileIOError) -> mode_t {
        var info = stat()
        guard stat(path, &info) == 0 else { throw .fromErrno(errno, path: path, operation: "inspect") }
        return info.st_mode & 0o7777
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws(FileIOError) {
        var written = 0
        while written < bytes.count {
            let n = bytes.withUnsafeBytes { buffer in
                write(fd, buffer.baseAddress! + written, buffer.count - written)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw .fromErrno(errno, path: path, operation: "write")
            }
            written += n
        }
    }

    private static func syncFolder(of path: String) throws(FileIOError) {
        let folder = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        let fd = open(folder.isEmpty ? "/" : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .fromErrno(errno, path: folder, operation: "open folder") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw .fromErrno(errno, path: folder, operation: "sync folder") }
    }
}

extension FileIO {
    /// Runs `body` while holding an exclusive advisory lock on `path` (created if missing), so two
    /// processes never change the same files at once.
    public static func withExclusiveLock<T>(_ path: String, _ body: () throws -> T) throws -> T {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw FileIOError.fromErrno(errno, path: path, operation: "lock") }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw FileIOError.fromErrno(errno, path: path, operation: "lock") }
        }
        return try body()
    }

    /// Renames `from` to `to` within one file system.
    public static func move(_ from: String, to: String) throws(FileIOError) {
        guard rename(from, to) == 0 else { throw .fromErrno(errno, path: from, operation: "move") }
    }
}

extension FileIO {
    /// Removes a file; one that is already gone is not an error.
    public static func remove(_ path: String) throws(FileIOError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw .fromErrno(errno, path: path, operation: "remove") }
    }
}

/// A file that only grows at its end, each line made durable (fsync) before ``append(_:)``
/// returns: once a caller has been told "done", a crash of the process or the machine keeps it.
/// An append that fails (a short write on a full disk, a failed sync) is cut back to the last
/// whole line before the error is thrown, so a refused change never lies in the middle of the file.
public final class AppendLog: @unchecked Sendable {
    /// Writes bytes to a descriptor like `write(2)`: the count written, or -1 with `errno` set.
    public typealias Write = @Sendable (Int32, UnsafeRawBufferPointer) -> Int

    private let fd: Int32
    /// The function that writes to the file (the system's `write(2)` unless a test injects failures).
    public let write: Write
    public let path: String
    /// Bytes of whole, durable lines in the file.
    public private(set) var length: Int

    /// Cuts the file back to `length` bytes (a torn last line found by replay) and makes that durable.
    public func truncate(to length: Int) throws(FileIOError) {
        guard ftruncate(fd, off_t(length)) == 0, fdatasync(fd) == 0 else { throw .fromErrno(errno, path: path, operation: "truncate") }
        self.length = length
    }

    /// Opens `path` for appending, creating it if needed; `write` is the system's unless a test
    /// injects failures.
    public init(path: String, write: Write? = nil) throws(FileIOError) {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .fromErrno(errno, path: path, operation: "open") }
        let end = lseek(fd, 0, SEEK_END)
        guard end >= 0 else {
            let code = errno
            close(fd)
            throw .fromErrno(code, path: path, operation: "open")
        }
        self.fd = fd
        self.write = write ?? { fd, buffer in systemWrite(fd, buffer.baseAddress, buffer.count) }
        self.path = path
        self.length = Int(end)
    }

    deinit {
        close(fd)
    }

    /// Appends `lines` (each gets a line feed) in one write and waits until they are on disk.
    public func append(_ lines: [String]) throws(FileIOError) {
        let bytes = Array(lines.map { $0 + "\n" }.joined().utf8)
        do throws(FileIOError) {
            var written = 0
            while written < bytes.count {
                let n = bytes.withUnsafeBytes { write(fd, UnsafeRawBufferPointer(rebasing: $0[written...])) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw .fromErrno(errno, path: path, operation: "append to")
                }
                written += n
            }
            guard fdatasync(fd) == 0 else { throw .fromErrno(errno, path: path, operation: "sync") }
        } catch {
            // Best effort: if even this fails, replay refuses the torn line by its number.
            if ftruncate(fd, off_t(length)) == 0 { _ = fdatasync(fd) }
            throw error
        }
        length += bytes.count
    }
}

extension FileIO {
    /// Calls `body` with the bytes of each line of `path` that ends in a line feed (without it,
    /// valid only during the call) and its number from 1, reading in chunks so that memory stays
    /// constant whatever the file's size. Returns the bytes of those lines and the bytes after the
    /// last line feed (a torn last line) that `body` never saw.
    public static func forEachLine(
        _ path: String, maximumLineLength: Int, _ body: (UnsafeRawBufferPointer, Int) throws -> Void
    ) throws -> (wholeLines: Int, tornBytes: Int) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileIOError.fromErrno(errno, path: path, operation: "read") }
        defer { close(fd) }
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var pending: [UInt8] = []
        var number = 0
        var consumed = 0
        while true {
            let n = chunk.withUnsafeMutableBytes { systemRead(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw FileIOError.fromErrno(errno, path: path, operation: "read")
            }
            if n == 0 { return (consumed, pending.count) }
            let rest = try chunk.withUnsafeBytes { read in
                var start = 0
                while let found = memchr(read.baseAddress! + start, Int32(UInt8(ascii: "\n")), n - start) {
                    let end = UnsafeRawPointer(found) - read.baseAddress!
                    number += 1
                    consumed += pending.count + end - start + 1
                    if pending.isEmpty {
                        try body(UnsafeRawBufferPointer(rebasing: read[start..<end]), number)
                    } else {
                        pending.append(contentsOf: read[start..<end])
                        try pending.withUnsafeBytes { try body($0, number) }
                        pending.removeAll(keepingCapacity: true)
                    }
                    start = end + 1
                }
                return start
            }
            pending.append(contentsOf: chunk[rest..<n])
            if pending.count > maximumLineLength {
                throw FileIOError(.tooLarge(limit: maximumLineLength), path: path, operation: "read line \(number + 1) of")
            }
        }
    }
}
