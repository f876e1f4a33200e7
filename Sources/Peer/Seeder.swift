import FileIO
import Logging
import NIOCore
import NIOPosix
import PKI
import TLS
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// Serves the files in the share index to other peers over mutual TLS: a client names a file
/// (HELLO), gets the bitfield, and asks for blocks. File reads run on a thread pool, never on an
/// event loop; a file whose size or modification time changed since it was shared is not served.
public final class Seeder: Sendable {
    private let index: ShareIndex
    private let tls: TLSContext
    private let threadPool: NIOThreadPool
    private let logger: Logger

    public init(index: ShareIndex, tls: TLSContext, threadPool: NIOThreadPool, logger: Logger) {
        self.index = index
        self.tls = tls
        self.threadPool = threadPool
        self.logger = logger
    }

    /// Binds and serves; returns the bound address.
    public func start(host: String, port: Int, group: EventLoopGroup) throws -> Channel {
        try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] child in
                child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandlers([
                        TLSHandler(context: tls, side: .server),
                        IdleStateHandler(readTimeout: .seconds(120)),
                        ByteToMessageHandler(PeerFrameDecoder()),
                        MessageToByteHandler(PeerFrameEncoder()),
                        SeedSession(index: index, threadPool: threadPool, logger: logger),
                    ])
                }
            }
            .bind(host: host, port: port).wait()
    }
}

/// One downloader's connection to this seeder.
final class SeedSession: ChannelInboundHandler {
    typealias InboundIn = PeerFrame
    typealias OutboundOut = PeerFrame

    private let index: ShareIndex
    private let threadPool: NIOThreadPool
    private var logger: Logger
    private var identity: VerifiedIdentity?
    private var serving: (entry: ShareEntry, fd: Int32)?
    /// Reads run one after another so that blocks go out in the order they were asked for.
    private var previousRead: EventLoopFuture<Void>?

    init(index: ShareIndex, threadPool: NIOThreadPool, logger: Logger) {
        self.index = index
        self.threadPool = threadPool
        self.logger = logger
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSEvent.handshakeCompleted(let identity)? = event as? TLSEvent {
            self.identity = identity
            logger[metadataKey: "peer"] = "\(identity.name)"
        } else if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .hello(let file):
            hello(file, context: context)
        case .request(let piece, let offset, let length):
            request(piece: piece, offset: offset, length: length, context: context)
        default:
            refuse("BAD_REQUEST", "only HELLO and REQUEST frames are served", context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let fd = serving?.fd { close(fd) }
        serving = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.warning("closing a download connection: \(error)")
        context.close(promise: nil)
    }

    private func hello(_ file: FileID, context: ChannelHandlerContext) {
        guard serving == nil else { return refuse("BAD_REQUEST", "one file per connection", context: context) }
        guard let entry = index.entry(for: file) else {
            return refuse("FILE_NOT_FOUND", "this peer does not share \(file)", context: context)
        }
        let fd = open(entry.dataPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0, FileStamp(fd: fd)?.matches(entry) == true else {
            if fd >= 0 { close(fd) }
            logger.warning("not serving a file that changed since it was shared", metadata: ["file": "\(file)", "path": "\(entry.dataPath)"])
            return refuse("FILE_CHANGED", "the shared copy changed on disk; it is no longer served", context: context)
        }
        serving = (entry, fd)
        logger.info("serving", metadata: ["file": "\(file)"])
        let pieces = Int((entry.size + UInt64(entry.pieceSize) - 1) / UInt64(entry.pieceSize))
        var bits = [UInt8](repeating: 0xff, count: (pieces + 7) / 8)
        if pieces % 8 != 0 { bits[bits.count - 1] = UInt8(0xff) << (8 - pieces % 8) }
        context.writeAndFlush(wrapOutboundOut(.bitfield(bits)), promise: nil)
    }

    private func request(piece: UInt32, offset: UInt32, length: UInt32, context: ChannelHandlerContext) {
        guard let (entry, fd) = serving else { return refuse("BAD_REQUEST", "HELLO first", context: context) }
        let start = UInt64(piece) * UInt64(entry.pieceSize) + UInt64(offset)
        guard offset < entry.pieceSize, UInt64(offset) + UInt64(length) <= UInt64(entry.pieceSize),
              start + UInt64(length) <= entry.size
        else { return refuse("BAD_REQUEST", "piece \(piece) offset \(offset) length \(length) is outside the file", context: context) }
        let allocator = context.channel.allocator
        let threadPool = self.threadPool
        let eventLoop = context.eventLoop
        let readBlock: @Sendable () -> EventLoopFuture<ByteBuffer> = {
            threadPool.runIfActive(eventLoop: eventLoop) { () throws -> ByteBuffer in
                guard FileStamp(fd: fd)?.matches(entry) == true else { throw FileChanged() }
                var buffer = allocator.buffer(capacity: Int(length))
                try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Int(length)) { space in
                    let n = pread(fd, space.baseAddress, Int(length), off_t(start))
                    guard n == Int(length) else { throw FileChanged() }
                    return n
                }
                return buffer
            }
        }
        let read = previousRead.map { $0.flatMap(readBlock) } ?? readBlock()
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        previousRead = read.map { data in
            let (session, context) = bound.value
            context.writeAndFlush(session.wrapOutboundOut(.piece(piece: piece, offset: offset, data: data)), promise: nil)
        }.flatMapErrorThrowing { error in
            let (session, context) = bound.value
            session.logger.warning("stopped serving a file that changed on disk", metadata: ["path": "\(entry.dataPath)"])
            session.refuse("FILE_CHANGED", "the shared copy changed on disk; it is no longer served", context: context)
            throw error
        }
    }

    private func refuse(_ code: String, _ message: String, context: ChannelHandlerContext) {
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.reject(code: code, message: message))).whenComplete { _ in channel.close(promise: nil) }
    }
}

struct FileChanged: Error {}
