import FileIO
import Foundation

/// A command that failed, with the code the shell prints (`FAILURE: CODE message`).
public struct CommandFailure: Error, CustomStringConvertible, Equatable {
    public let code: String
    public let message: String

    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code) \(message)" }
}

/// Where a download lands: only verified pieces are written, into `<save>.part`; the save path
/// appears only when the whole file is there, synced, and never over an existing file.
final class PartFile: @unchecked Sendable {
    let savePath: String
    let partPath: String
    private let fd: Int32
    private var finished = false

    init(savePath: String, size: UInt64) throws(CommandFailure) {
        self.savePath = savePath
        partPath = savePath + ".part"
        let folder = (savePath as NSString).deletingLastPathComponent.isEmpty ? "." : (savePath as NSString).deletingLastPathComponent
        var info = stat()
        guard lstat(folder, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR else {
            throw CommandFailure("INVALID_ARGUMENTS", "the folder \(folder) does not exist (or is not a folder)")
        }
        guard lstat(savePath, &info) != 0 else {
            throw CommandFailure("ALREADY_EXISTS", "\(savePath) already exists; choose another save location")
        }
        // A previous attempt's .part is ours to replace: only verified pieces were ever in it.
        let fd = open(partPath, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw CommandFailure("INVALID_ARGUMENTS", "cannot write \(partPath): \(String(cString: strerror(errno)))")
        }
        // Reserve the space now: a full disk is reported before any transfer, and writes into
        // reserved blocks are cheaper. File systems without reservation get a sparse file.
        let reserved = size == 0 ? 0 : posix_fallocate(fd, 0, off_t(size))
        if reserved == ENOSPC || reserved == EFBIG {
            close(fd)
            unlink(partPath)
            throw CommandFailure("DISK_FULL", "not enough free space for \(size) bytes at \(partPath)")
        }
        if reserved != 0, ftruncate(fd, off_t(size)) != 0 {
            let reason = String(cString: strerror(errno))
            close(fd)
            unlink(partPath)
            throw CommandFailure("DOWNLOAD_FAILED", "cannot make room for \(size) bytes in \(partPath): \(reason)")
        }
        self.fd = fd
    }

    deinit {
        close(fd)
        if !finished { unlink(partPath) }
    }

    /// Writes one verified piece at its place (safe from several threads at different offsets).
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(CommandFailure) {
        var written = 0
        while written < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + written, bytes.count - written, off_t(offset) + off_t(written))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw CommandFailure("DOWNLOAD_FAILED", "cannot write \(partPath): \(String(cString: strerror(errno)))") }
            written += n
        }
    }

    /// Gives up on the download: the `.part` file is removed at once (pieces still being written
    /// land in the removed file, which nothing can see).
    func abandon() {
        guard !finished else { return }
        finished = true
        unlink(partPath)
    }

    /// Syncs the data and gives it its final name, refusing to replace anything there.
    func finish() throws(CommandFailure) {
        guard fsync(fd) == 0 else { throw CommandFailure("DOWNLOAD_FAILED", "cannot sync \(partPath): \(String(cString: strerror(errno)))") }
        guard link(partPath, savePath) == 0 else {
            if errno == EEXIST { throw CommandFailure("ALREADY_EXISTS", "\(savePath) appeared during the download; the data stays in \(partPath)") }
            throw CommandFailure("DOWNLOAD_FAILED", "cannot create \(savePath): \(String(cString: strerror(errno)))")
        }
        finished = true
        unlink(partPath)
    }
}
