import FileIO
import Foundation
import Pieces

/// Where a download lands: only verified pieces are written, into `<save>.part`; the save path
/// appears only when the whole file is there, synced, and never over an existing file. Both
/// names live in one folder opened once (``SaveLocation``), so no symbolic link or `..` can
/// lead a write elsewhere.
///
/// A `.part` left by an interrupted download is kept and resumed: every piece in it is hashed
/// again and only those matching their signed hash count as held. One download at a time may
/// write a `.part` (an exclusive lock held while it is open).
final class PartFile: @unchecked Sendable {
    /// The file written, as the user sees it (the save location, plus the file name when it is a folder).
    let savePath: String
    let partPath: String
    /// The folder of the save location, opened once: every later call is relative to it.
    private let folder: Int32
    private let name: String
    private let partName: String
    let layout: PieceLayout
    /// The pieces found intact in a `.part` from an earlier attempt.
    let resumed: Bitfield
    private let fd: Int32
    private var finished = false

    /// Opens (or resumes) the `.part` for `location`; `defaultName` is the file name used when
    /// the location is a folder.
    init(location: String, defaultName: String, layout: PieceLayout, pieceHashes: [[UInt8]]) throws(CommandFailure) {
        let place = try SaveLocation.open(location, defaultName: defaultName)
        folder = place.folder
        name = place.name
        partName = place.name + ".part"
        savePath = place.path
        partPath = place.path + ".part"
        self.layout = layout
        do throws(CommandFailure) {
            (fd, resumed) = try Self.openPart(in: folder, for: name, shownAs: savePath, layout: layout, pieceHashes: pieceHashes)
        } catch {
            close(folder)
            throw error
        }
    }

    /// Creates or reopens the `.part`, locks it, reserves its space and finds the pieces of an earlier attempt.
    private static func openPart(
        in folder: Int32, for name: String, shownAs savePath: String, layout: PieceLayout, pieceHashes: [[UInt8]]
    ) throws(CommandFailure) -> (Int32, Bitfield) {
        let partName = name + ".part", partPath = savePath + ".part"
        var info = stat()
        guard faccessat(folder, ".", W_OK | X_OK, 0) == 0 else {
            throw CommandFailure(.permissionDenied, "this peer may not write in the folder of \(savePath); choose another save location")
        }
        if fstatat(folder, name, &info, AT_SYMLINK_NOFOLLOW) == 0 {
            let what = (info.st_mode & S_IFMT) == S_IFLNK ? "is a symbolic link" : "already exists"
            throw CommandFailure(.alreadyExists, "\(savePath) \(what); choose another save location")
        }
        let fd = openat(folder, partName, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            if errno == ENAMETOOLONG { throw CommandFailure(.invalidArguments, "the name \(partName) is too long for this file system") }
            if errno == ELOOP { throw CommandFailure(.invalidArguments, "\(partPath) is a symbolic link; remove it or choose another save location") }
            throw CommandFailure(.invalidArguments, "cannot write \(partPath): \(String(cString: strerror(errno)))")
        }
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw CommandFailure(.invalidArguments, "\(partPath) exists and is not a regular file")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw CommandFailure(.alreadyRunning, "another download is writing \(partPath)")
        }
        let earlier = info.st_size > 0
        if earlier, UInt64(info.st_size) != layout.fileSize, ftruncate(fd, off_t(layout.fileSize)) != 0 {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw CommandFailure(.downloadFailed, "cannot resize \(partPath): \(reason)")
        }
        // Reserve the space now: a full disk is reported before any transfer, and writes into
        // reserved blocks are cheaper. File systems without reservation get a sparse file.
        let reserved = layout.fileSize == 0 ? 0 : posix_fallocate(fd, 0, off_t(layout.fileSize))
        if reserved == ENOSPC || reserved == EFBIG {
            close(fd)
            if !earlier { unlinkat(folder, partName, 0) }
            throw CommandFailure(.diskFull, "not enough free space for \(layout.fileSize) bytes at \(partPath)")
        }
        if reserved != 0, ftruncate(fd, off_t(layout.fileSize)) != 0 {
            let reason = String(cString: strerror(errno))
            close(fd)
            if !earlier { unlinkat(folder, partName, 0) }
            throw CommandFailure(.downloadFailed, "cannot make room for \(layout.fileSize) bytes in \(partPath): \(reason)")
        }
        return (fd, earlier ? intactPieces(of: partPath, layout: layout, pieceHashes: pieceHashes) : Bitfield(count: layout.pieceCount))
    }

    /// Hashes every piece of an earlier `.part`: the data is trusted only where it matches.
    private static func intactPieces(of path: String, layout: PieceLayout, pieceHashes: [[UInt8]]) -> Bitfield {
        var intact = Bitfield(count: layout.pieceCount)
        guard let hashed = try? PieceHasher.hashFile(at: path, pieceSize: layout.pieceSize), hashed.layout == layout else { return intact }
        for index in 0..<layout.pieceCount where hashed.pieceHashes[index] == pieceHashes[index] { intact.insert(index) }
        return intact
    }

    deinit {
        close(fd)
        close(folder)
    }

    /// Writes one verified piece at its place (safe from several threads at different offsets).
    func write(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(CommandFailure) {
        var written = 0
        while written < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + written, bytes.count - written, off_t(offset) + off_t(written))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else {
                if n < 0, errno == ENOSPC || errno == EDQUOT || errno == EFBIG { throw CommandFailure(.diskFull, "no space left to write \(partPath)") }
                throw CommandFailure(.downloadFailed, "cannot write \(partPath): \(String(cString: strerror(errno)))")
            }
            written += n
        }
    }

    /// Gives up on a download that verified nothing: the `.part` file is removed at once (pieces
    /// still being written land in the removed file, which nothing can see). A `.part` holding
    /// verified pieces is kept instead, so that the same `get` resumes from it.
    func abandon() {
        guard !finished else { return }
        finished = true
        unlinkat(folder, partName, 0)
    }

    /// Syncs the data and gives it its final name, refusing to replace anything there.
    func finish() throws(CommandFailure) {
        guard fsync(fd) == 0 else { throw CommandFailure(.downloadFailed, "cannot sync \(partPath): \(String(cString: strerror(errno)))") }
        guard linkat(folder, partName, folder, name, 0) == 0 else {
            if errno == EEXIST { throw CommandFailure(.alreadyExists, "\(savePath) appeared during the download; the data stays in \(partPath)") }
            throw CommandFailure(.downloadFailed, "cannot create \(savePath): \(String(cString: strerror(errno)))")
        }
        finished = true
        unlinkat(folder, partName, 0)
    }
}
