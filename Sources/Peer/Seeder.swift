import FileIO
import Logging
import NIOCore
import NIOPosix
import PKI
import Pieces
import NIOConcurrencyHelpers
import TLS
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// Serves the files in the share index, and the verified pieces of downloads in progress, to other
/// peers over mutual TLS: a client names a file (HELLO), gets the bitfield (then a HAVE for every
/// piece verified later), and asks for blocks. File reads run on a thread pool, never on an event
/// loop; a shared file whose size or modification time changed since it was shared is not served.
/// Upload slots, queued requests per connection and the upload rate are limited (``PeerLimits``).
public final class Seeder: Sendable {
    private let index: ShareIndex
    let partials: PartialShares
    private let tls: TLSContext
    private let threadPool: NIOThreadPool
    private let logger: Logger
    let limits: PeerLimits
    let pacer: UploadPacer
    private let counters = NIOLockedValueBox<Counters>(Counters())

    private struct Counters {
        var connections = 0
        var sessionsByPeer: [String: Int] = [:]
        var uploaded: [FileID: UInt64] = [:]
    }

    init(index: ShareIndex, partials: PartialShares, tls: TLSContext, threadPool: NIOThreadPool, limits: PeerLimits, logger: Logger) {
        self.index = index
        self.partials = partials
        self.tls = tls
        self.threadPool = threadPool
        self.limits = limits
        self.logger = logger
        pacer = UploadPacer(bytesPerSecond: limits.uploadBytesPerSecond)
    }

    /// Binds and serves; returns the bound address.
    func start(host: String, port: Int, group: EventLoopGroup) throws -> Channel {
        try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] child in
                child.eventLoop.makeCompletedFuture {
                    guard admitConnection() else {
                        logger.warning("refusing a connection: the connection limit is reached", metadata: ["limit": "\(limits.maximumConnections)"])
                        child.close(promise: nil)
                        return
                    }
                    child.closeFuture.whenComplete { [self] _ in counters.withLockedValue { $0.connections -= 1 } }
                    try child.pipeline.syncOperations.addHandlers([
                        TLSHandler(context: tls, side: .server),
                        IdleStateHandler(readTimeout: .seconds(limits.idleTimeout)),
                        ByteToMessageHandler(PeerFrameDecoder()),
                        MessageToByteHandler(PeerFrameEncoder()),
                        SeedSession(seeder: self, index: index, threadPool: threadPool, logger: logger),
                    ])
                }
            }
            .bind(host: host, port: port).wait()
    }

    /// Bytes uploaded per file since this peer started.
    var uploaded: [FileID: UInt64] { counters.withLockedValue { $0.uploaded } }

    func countUpload(_ bytes: Int, of file: FileID) {
        counters.withLockedValue { $0.uploaded[file, default: 0] += UInt64(bytes) }
    }

    private func admitConnection() -> Bool {
        counters.withLockedValue { counters in
            guard counters.connections < limits.maximumConnections else { return false }
            counters.connections += 1
            return true
        }
    }

    /// Takes an upload slot for `peer` (a certificate fingerprint), or says why none is free.
    func takeSlot(for peer: String) -> String? {
        counters.withLockedValue { counters in
            let all = counters.sessionsByPeer.values.reduce(0, +)
            guard all < limits.uploadSlots else { return "all \(limits.uploadSlots) upload slots are in use; try again later" }
            guard counters.sessionsByPeer[peer, default: 0] < limits.uploadsPerPeer else {
                return "you hold \(limits.uploadsPerPeer) upload slots already; try again later"
            }
            counters.sessionsByPeer[peer, default: 0] += 1
            return nil
        }
    }

    func releaseSlot(for peer: String) {
        counters.withLockedValue { counters in
            counters.sessionsByPeer[peer, default: 1] -= 1
            if counters.sessionsByPeer[peer] == 0 { counters.sessionsByPeer[peer] = nil }
        }
    }
}

/// One downloader's connection to this peer.
final class SeedSession: ChannelInboundHandler {
    typealias InboundIn = PeerFrame
    typealias OutboundOut = PeerFrame

    /// What the connection serves: a shared file (checked against its stamp) or a download in progress.
    private enum Source {
        case complete(ShareEntry)
        case partial(PartialShare, watcher: Int)
    }

    private let seeder: Seeder
    private let index: ShareIndex
    private let threadPool: NIOThreadPool
    private var logger: Logger
    private var serving: (file: FileID, source: Source, fd: Int32, pieceSize: Int, size: UInt64)?
    /// Reads run one after another so that blocks go out in the order they were asked for.
    private var previousRead: EventLoopFuture<Void>?
    private var queuedRequests = 0
    private var peer = ""
    /// Completed when the channel can take more bytes (reads from disk wait for it).
    private var writable: EventLoopPromise<Void>?

    init(seeder: Seeder, index: ShareIndex, threadPool: NIOThreadPool, logger: Logger) {
        self.seeder = seeder
        self.index = index
        self.threadPool = threadPool
        self.logger = logger
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSEvent.handshakeCompleted(let identity)? = event as? TLSEvent {
            logger[metadataKey: "peer"] = "\(identity.name)"
            peer = identity.fingerprint
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
            refuse(.badRequest, "only HELLO and REQUEST frames are served", context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let serving {
            close(serving.fd)
            if case .partial(let share, let watcher) = serving.source { share.unwatch(watcher) }
            seeder.releaseSlot(for: peer)
        }
        serving = nil
        writable?.succeed()
        writable = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.warning("closing a download connection: \(error)")
        context.close(promise: nil)
    }

    private func hello(_ file: FileID, context: ChannelHandlerContext) {
        guard serving == nil else { return refuse(.badRequest, "one file per connection", context: context) }
        logger[metadataKey: "file"] = "\(file)"
        if let entry = index.entry(for: file) {
            let fd = open(entry.dataPath, O_RDONLY | O_CLOEXEC)
            guard fd >= 0, FileStamp(fd: fd)?.matches(entry) == true else {
                if fd >= 0 { close(fd) }
                logger.warning("not serving a file that changed since it was shared", metadata: ["path": "\(entry.dataPath)"])
                return refuse(.fileChanged, "the shared copy changed on disk; it is no longer served", context: context)
            }
            if let busy = seeder.takeSlot(for: peer) {
                close(fd)
                return refuse(.busy, busy, context: context)
            }
            serving = (file, .complete(entry), fd, entry.pieceSize, entry.size)
            logger.info("serving")
            context.writeAndFlush(wrapOutboundOut(.bitfield(Bitfield.full(count: pieceCount(entry.size, entry.pieceSize)).bytes)), promise: nil)
        } else if let share = seeder.partials.share(for: file) {
            let fd = open(share.partPath, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return refuse(.fileNotFound, "this peer has just finished or given up \(file); ask the tracker again", context: context) }
            if let busy = seeder.takeSlot(for: peer) {
                close(fd)
                return refuse(.busy, busy, context: context)
            }
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            let (held, watcher) = share.watch { piece in
                eventLoop.execute {
                    let (session, context) = bound.value
                    context.writeAndFlush(session.wrapOutboundOut(.have(piece: UInt32(piece))), promise: nil)
                }
            }
            serving = (file, .partial(share, watcher: watcher), fd, share.layout.pieceSize, share.layout.fileSize)
            logger.info("serving the verified pieces of a download in progress", metadata: ["pieces": "\(held.heldCount)/\(held.count)"])
            context.writeAndFlush(wrapOutboundOut(.bitfield(held.bytes)), promise: nil)
        } else {
            refuse(.fileNotFound, "this peer does not share \(file)", context: context)
        }
    }

    private func pieceCount(_ size: UInt64, _ pieceSize: Int) -> Int {
        Int((size + UInt64(pieceSize) - 1) / UInt64(pieceSize))
    }

    private func request(piece: UInt32, offset: UInt32, length: UInt32, context: ChannelHandlerContext) {
        guard let (file, source, fd, pieceSize, size) = serving else { return refuse(.badRequest, "HELLO first", context: context) }
        let start = UInt64(piece) * UInt64(pieceSize) + UInt64(offset)
        guard offset < pieceSize, UInt64(offset) + UInt64(length) <= UInt64(pieceSize), start + UInt64(length) <= size else {
            return refuse(.badRequest, "piece \(piece) offset \(offset) length \(length) is outside the file", context: context)
        }
        var entry: ShareEntry?
        switch source {
        case .complete(let shared): entry = shared
        case .partial(let share, _):
            guard share.holds(Int(piece)) else { return refuse(.badRequest, "piece \(piece) was not offered", context: context) }
        }
        queuedRequests += 1
        guard queuedRequests <= seeder.limits.queuedRequestsPerConnection else {
            logger.warning("a client queued more requests than allowed", metadata: ["limit": "\(seeder.limits.queuedRequestsPerConnection)"])
            return refuse(.tooManyRequests, "more than \(seeder.limits.queuedRequestsPerConnection) requests waiting", context: context)
        }
        let checkedEntry = entry
        let allocator = context.channel.allocator
        let threadPool = self.threadPool
        let eventLoop = context.eventLoop
        let readBlock: @Sendable () -> EventLoopFuture<ByteBuffer> = {
            threadPool.runIfActive(eventLoop: eventLoop) { () throws -> ByteBuffer in
                if let checkedEntry, FileStamp(fd: fd)?.matches(checkedEntry) != true { throw FileChanged() }
                var buffer = allocator.buffer(capacity: Int(length))
                try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: Int(length)) { space in
                    let n = pread(fd, space.baseAddress, Int(length), off_t(start))
                    guard n == Int(length) else { throw FileChanged() }
                    return n
                }
                return buffer
            }
        }
        let pacer = seeder.pacer
        let paced: @Sendable () -> EventLoopFuture<ByteBuffer> = {
            readBlock().flatMap { data in
                let wait = pacer.delay(forSending: Int(length))
                guard wait > .zero else { return eventLoop.makeSucceededFuture(data) }
                return eventLoop.scheduleTask(in: wait) { data }.futureResult
            }
        }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        // A client that does not read its blocks is not sent more: the next read waits for room.
        let whenWritable: @Sendable () -> EventLoopFuture<ByteBuffer> = {
            let (session, context) = bound.value
            return session.roomToWrite(context: context).flatMap(paced)
        }
        let read = previousRead.map { $0.flatMap(whenWritable) } ?? whenWritable()
        previousRead = read.map { data in
            let (session, context) = bound.value
            session.queuedRequests -= 1
            session.seeder.countUpload(Int(length), of: file)
            context.writeAndFlush(session.wrapOutboundOut(.piece(piece: piece, offset: offset, data: data)), promise: nil)
        }.flatMapErrorThrowing { error in
            let (session, context) = bound.value
            session.logger.warning("stopped serving a file that changed on disk")
            session.refuse(.fileChanged, "the shared copy changed on disk; it is no longer served", context: context)
            throw error
        }
    }

    private func roomToWrite(context: ChannelHandlerContext) -> EventLoopFuture<Void> {
        if context.channel.isWritable || !context.channel.isActive { return context.eventLoop.makeSucceededVoidFuture() }
        if writable == nil { writable = context.eventLoop.makePromise() }
        return writable!.futureResult
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            writable?.succeed()
            writable = nil
        }
        context.fireChannelWritabilityChanged()
    }

    private func refuse(_ code: FailureCode, _ message: String, context: ChannelHandlerContext) {
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.reject(code: code, message: message))).whenComplete { _ in channel.close(promise: nil) }
    }
}

struct FileChanged: Error {}
