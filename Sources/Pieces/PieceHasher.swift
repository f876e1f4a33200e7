import Dispatch
import FileIO
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The piece hashes of a file and the root hash that names it.
public struct HashedFile: Sendable {
    public let layout: PieceLayout
    /// One SHA-256 digest per piece, in order.
    public let pieceHashes: [[UInt8]]
    /// See ``RootHash``.
    public let root: [UInt8]
}

/// The hash of the hashes that names a file everywhere: SHA-256 over the file size (8 bytes,
/// big-endian), the piece size (4 bytes, big-endian) and then every piece hash in order. Binding
/// both sizes means two layouts of the same bytes never share a name.
public enum RootHash {
    public static func compute(layout: PieceLayout, pieceHashes: [[UInt8]]) -> [UInt8] {
        let digest = SHA256Digest()
        var header = [UInt8]()
        withUnsafeBytes(of: layout.fileSize.bigEndian) { header += $0 }
        withUnsafeBytes(of: UInt32(layout.pieceSize).bigEndian) { header += $0 }
        digest.update(header)
        for hash in pieceHashes { digest.update(hash) }
        return digest.finish()
    }
}

/// Why a file could not be hashed.
public enum PieceHashingError: Error, CustomStringConvertible {
    case file(FileIOError)
    case layout(PieceLayoutError)
    case changedWhileHashing(path: String)

    public var description: String {
        switch self {
        case .file(let error): return error.description
        case .layout(let error): return error.description
        case .changedWhileHashing(let path): return "\(path) changed while it was being hashed; try again when nothing writes to it"
        }
    }
}

/// Hashes a file's pieces on all cores while reading every byte exactly once. Each worker takes
/// the next unhashed piece and streams it through a fixed read buffer, so memory stays at
/// `workers × readBufferSize` whatever the size of the file.
public enum PieceHasher {
    /// Bytes read per system call and held per worker.
    public static let readBufferSize = 256 * 1024
    /// One worker per online core.
    public static var defaultWorkers: Int { max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// Hashes the file at `path`. `pieceSize` overrides the default layout; `progress` is called
    /// with the total number of bytes hashed so far, from worker threads.
    public static func hashFile(
        at path: String, pieceSize: Int? = nil, workers: Int = defaultWorkers,
        progress: (@Sendable (UInt64) -> Void)? = nil
    ) throws(PieceHashingError) -> HashedFile {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .file(FileIOError.fromErrno(errno, path: path, operation: "read")) }
        defer { close(fd) }
        let before = try fileStatus(fd, path: path)
        guard (before.st_mode & S_IFMT) == S_IFREG else { throw .file(FileIOError(.notRegularFile, path: path, operation: "share")) }
        let fileSize = UInt64(before.st_size)
        let layout: PieceLayout
        do throws(PieceLayoutError) {
            if let pieceSize {
                layout = try PieceLayout(fileSize: fileSize, pieceSize: pieceSize)
            } else {
                layout = try PieceLayout(fileSize: fileSize)
            }
        } catch {
            throw .layout(error)
        }
        #if canImport(Glibc)
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        #endif
        let shared = NIOLockedValueBox(HashingState(hashes: Array(repeating: [], count: layout.pieceCount)))
        let workerCount = max(1, min(workers, layout.pieceCount))
        DispatchQueue.concurrentPerform(iterations: workerCount) { _ in
            hashPieces(fd: fd, path: path, layout: layout, shared: shared, progress: progress)
        }
        let state = shared.withLockedValue { $0 }
        if let failure = state.failure { throw .file(failure) }
        let after = try fileStatus(fd, path: path)
        guard after.st_size == before.st_size, after.st_mtim.tv_sec == before.st_mtim.tv_sec,
              after.st_mtim.tv_nsec == before.st_mtim.tv_nsec
        else { throw .changedWhileHashing(path: path) }
        return HashedFile(layout: layout, pieceHashes: state.hashes, root: RootHash.compute(layout: layout, pieceHashes: state.hashes))
    }

    private struct HashingState: Sendable {
        var hashes: [[UInt8]]
        var nextPiece = 0
        var bytesDone: UInt64 = 0
        var failure: FileIOError?
    }

    private static func hashPieces(
        fd: Int32, path: String, layout: PieceLayout, shared: NIOLockedValueBox<HashingState>,
        progress: (@Sendable (UInt64) -> Void)?
    ) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(readBufferSize, max(layout.pieceSize, 1)), alignment: 4096)
        defer { buffer.deallocate() }
        let digest = SHA256Digest()
        while true {
            let index: Int? = shared.withLockedValue { state in
                guard state.failure == nil, state.nextPiece < layout.pieceCount else { return nil }
                defer { state.nextPiece += 1 }
                return state.nextPiece
            }
            guard let index else { return }
            digest.reset()
            var offset = layout.offset(ofPiece: index)
            var remaining = layout.length(ofPiece: index)
            while remaining > 0 {
                let n = pread(fd, buffer.baseAddress, min(buffer.count, remaining), off_t(offset))
                if n < 0, errno == EINTR { continue }
                guard n > 0 else {
                    let failure = n < 0
                        ? FileIOError.fromErrno(errno, path: path, operation: "read")
                        : FileIOError(.system(errno: EIO), path: path, operation: "read all of (the file shrank)")
                    shared.withLockedValue { $0.failure = $0.failure ?? failure }
                    return
                }
                digest.update(UnsafeRawBufferPointer(rebasing: buffer[..<n]))
                offset += UInt64(n)
                remaining -= n
            }
            let hash = digest.finish()
            let done = shared.withLockedValue { state in
                state.hashes[index] = hash
                state.bytesDone += UInt64(layout.length(ofPiece: index))
                return state.bytesDone
            }
            progress?(done)
        }
    }

    private static func fileStatus(_ fd: Int32, path: String) throws(PieceHashingError) -> stat {
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .file(FileIOError.fromErrno(errno, path: path, operation: "inspect")) }
        return info
    }
}
