import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// Why a block could not be read for a connection.
enum BlockReadFailure: Error, Equatable {
    /// The file's size or modification time no longer match the share, or it ended early.
    case changedOnDisk
    /// The operating system failed the read; the `errno` it gave.
    case readError(Int32)
    /// The connection ended before the read began: nothing was read.
    case cancelled
}

/// A file descriptor opened for one connection and lent to the reads it starts on the thread pool.
/// It is closed once the connection has given it up *and* the last read using it has finished,
/// never earlier: a read must never use a number the system has since given to another file.
final class SharedDescriptor: Sendable {
    private struct State {
        var fd: Int32
        var readers = 0
        var released = false
    }

    private let state: NIOLockedValueBox<State>

    init(_ fd: Int32) {
        state = NIOLockedValueBox(State(fd: fd))
    }

    /// The descriptor for one read, or nil once the connection gave it up. Every descriptor
    /// borrowed must be given back with ``giveBack()``.
    func borrow() -> Int32? {
        state.withLockedValue { state in
            guard !state.released else { return nil }
            state.readers += 1
            return state.fd
        }
    }

    /// Ends one read; closes the descriptor if the connection gave it up and no read is left.
    func giveBack() {
        closeIfUnused { $0.readers -= 1 }
    }

    /// The connection is done with the descriptor: it is closed now, or when the read in flight ends.
    func release() {
        closeIfUnused { $0.released = true }
    }

    private func closeIfUnused(after change: (inout State) -> Void) {
        let unused = state.withLockedValue { state -> Int32? in
            change(&state)
            guard state.released, state.readers == 0, state.fd >= 0 else { return nil }
            defer { state.fd = -1 }
            return state.fd
        }
        if let unused { close(unused) }
    }
}

/// The file one connection serves: its open descriptor, its layout and, for a complete share,
/// the entry whose size and modification time every read is checked against.
struct ServedFile: Sendable {
    let file: FileID
    let path: String
    let descriptor: SharedDescriptor
    let pieceSize: Int
    let size: UInt64
    /// Set for a complete share; nil for the `.part` of a download in progress.
    let entry: ShareEntry?

    /// Reads `block` on the thread pool. A read the connection gave up before it began fails as
    /// ``BlockReadFailure/cancelled`` without touching the disk.
    func read(_ block: Block, allocator: ByteBufferAllocator, threadPool: NIOThreadPool, eventLoop: EventLoop) -> EventLoopFuture<ByteBuffer> {
        let offset = UInt64(block.piece) * UInt64(pieceSize) + UInt64(block.offset)
        let length = block.length
        return threadPool.runIfActive(eventLoop: eventLoop) { [self] () throws(BlockReadFailure) -> ByteBuffer in
            guard let fd = descriptor.borrow() else { throw .cancelled }
            defer { descriptor.giveBack() }
            if let entry, FileStamp(fd: fd)?.matches(entry) != true { throw .changedOnDisk }
            var buffer = allocator.buffer(capacity: length)
            var failure: Int32 = 0
            let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { space in
                var count: Int
                repeat {
                    count = pread(fd, space.baseAddress, length, off_t(offset))
                } while count < 0 && errno == EINTR
                if count < 0 { failure = errno }
                return max(count, 0)
            }
            guard failure == 0 else { throw .readError(failure) }
            guard count == length else { throw .changedOnDisk }
            return buffer
        }
    }
}
