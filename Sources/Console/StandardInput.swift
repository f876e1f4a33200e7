import Foundation
import NIOCore
import NIOPosix

/// One line of standard input, or the note that a line was too long to take.
public enum InputLine: Sendable, Equatable {
    case text(String)
    /// A line longer than the limit was skipped, up to its end.
    case tooLong(limit: Int)
}

/// Cuts standard input into lines: a line feed ends a line, a carriage return before it is
/// dropped, bytes that are not UTF-8 read as U+FFFD, and a line longer than ``maximumLength`` is
/// skipped up to its end and reported once. The last line needs no line feed.
struct InputLineSplitter {
    static let maximumLength = 64 * 1024

    private var pending: [UInt8] = []
    private var skipping = false

    mutating func take(_ bytes: some Sequence<UInt8>) -> [InputLine] {
        var lines: [InputLine] = []
        for byte in bytes {
            if byte == UInt8(ascii: "\n") {
                if skipping {
                    skipping = false
                } else {
                    lines.append(line())
                }
                pending.removeAll(keepingCapacity: true)
            } else if !skipping {
                pending.append(byte)
                if pending.count > Self.maximumLength {
                    skipping = true
                    pending.removeAll()
                    lines.append(.tooLong(limit: Self.maximumLength))
                }
            }
        }
        return lines
    }

    /// The last line, if input ended without a line feed.
    mutating func finish() -> [InputLine] {
        defer { pending = [] }
        return pending.isEmpty || skipping ? [] : [line()]
    }

    private func line() -> InputLine {
        .text(String(decoding: pending.last == UInt8(ascii: "\r") ? pending.dropLast() : pending[...], as: UTF8.self))
    }
}

/// Standard input as lines. A terminal or a pipe is read by an event loop, so no thread waits for
/// the next line; it is opened anew, so the non-blocking mode an event loop needs stays off the
/// descriptor the shell shares. Anything else (a regular file, `/dev/null`), whose reads never
/// wait, is read by a thread of its own.
enum StandardInput {
    static func lines(group: EventLoopGroup, onLine: @escaping @Sendable () -> Void) async -> AsyncStream<InputLine> {
        let (lines, continuation) = AsyncStream.makeStream(of: InputLine.self)
        let descriptor = open("/proc/self/fd/0", O_RDONLY | O_CLOEXEC)
        if descriptor >= 0 {
            let reader = InputReader(continuation: continuation, onLine: onLine)
            let channel = NIOPipeBootstrap(group: group)
                .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(reader) } }
                .takingOwnershipOfDescriptor(input: descriptor)
            if (try? await channel.get()) != nil { return lines }
            close(descriptor)
        }
        // A thread of its own rather than a task: should this be something that can wait after all
        // (a socket), it must not hold one of the few threads tasks run on.
        Thread {
            var splitter = InputLineSplitter()
            while true {
                let chunk = FileHandle.standardInput.availableData
                if chunk.isEmpty { break }
                for line in splitter.take(chunk) {
                    continuation.yield(line)
                    onLine()
                }
            }
            for line in splitter.finish() { continuation.yield(line) }
            continuation.finish()
        }.start()
        return lines
    }
}

/// Hands the lines read from standard input on; the input's end ends the stream.
private final class InputReader: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    private let continuation: AsyncStream<InputLine>.Continuation
    private let onLine: @Sendable () -> Void
    private var splitter = InputLineSplitter()

    init(continuation: AsyncStream<InputLine>.Continuation, onLine: @escaping @Sendable () -> Void) {
        self.continuation = continuation
        self.onLine = onLine
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        for line in splitter.take(unwrapInboundIn(data).readableBytesView) {
            continuation.yield(line)
            onLine()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        for line in splitter.finish() { continuation.yield(line) }
        continuation.finish()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}
