import FileIO
import Logging
import NIOCore
import NIOPosix
import Pieces
import TLS
import Wire

#if canImport(Glibc)
import Glibc
#endif

/// One downloader's connection to this peer. Blocks asked for wait in a queue and are read one at
/// a time on the thread pool, so they go out in the order asked for; the next read starts only
/// when the channel can take more bytes. When the connection ends, the blocks still queued are
/// dropped, the file is closed once the read in flight (if any) has finished, and nothing more is
/// charged to the upload limit or counted as uploaded: only blocks handed to a live channel are.
final class SeedSession: ChannelInboundHandler {
    typealias InboundIn = PeerFrame
    typealias OutboundOut = PeerFrame

    private let seeder: Seeder
    private let index: ShareIndex
    private let threadPool: NIOThreadPool
    private var logger: Logger
    /// The file named by HELLO, and the watcher token when it is a download in progress.
    private var serving: (file: ServedFile, partial: (share: PartialShare, watcher: Int)?)?
    private var queued = CircularBuffer<Block>()
    /// A block is being read, or waits for its turn under the upload limit.
    private var busy = false
    /// The next try to send a block held back by the upload limit.
    private var pacing: Scheduled<Void>?
    /// The client's certificate fingerprint (known once the handshake completed).
    private var peer = ""
    /// Super-seeding a shared file: its offers and this connection's number in them.
    private var offers: (shared: SharedOffers, connection: PieceOffers.Connection)?
    /// Looks twice a second whether the client leaves its offers alone (another seed serves it).
    private var offerCheck: RepeatedTask?
    /// Requests received since the last look.
    private var recentRequests = 0
    /// Whether the client leaves its offers alone.
    private var offerWatch = OfferWatch()

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
            seeder.register(context.channel, identity: identity)
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
        offerCheck?.cancel()
        offerCheck = nil
        if let offers, let serving { seeder.closeOffers(of: serving.file.file, connection: offers.connection) }
        offers = nil
        if let serving {
            serving.file.descriptor.release()
            if let partial = serving.partial { partial.share.unwatch(partial.watcher) }
            seeder.releaseSlot(for: peer)
        }
        serving = nil
        queued.removeAll()
        pacing?.cancel()
        pacing = nil
        seeder.unregister(context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.warning("closing a download connection: \(error)")
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        pump(context: context)
        context.fireChannelWritabilityChanged()
    }

    private func hello(_ file: FileID, context: ChannelHandlerContext) {
        guard serving == nil else { return refuse(.badRequest, "one file per connection", context: context) }
        logger[metadataKey: "file"] = "\(file.short)"
        if let entry = index.entry(for: file) {
            logger[metadataKey: "file"] = "\(file.label(entry.dataPath.split(separator: "/").last.map(String.init) ?? entry.dataPath))"
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
            let served = ServedFile(file: file, path: entry.dataPath, descriptor: SharedDescriptor(fd), pieceSize: entry.pieceSize, size: entry.size, entry: entry)
            serving = (served, nil)
            seeder.record(file, servedOn: context.channel)
            logger.info("serving")
            let count = pieceCount(entry.size, entry.pieceSize)
            context.writeAndFlush(wrapOutboundOut(.bitfield(offer(file, pieceCount: count, pieceSize: entry.pieceSize, context: context).bytes)), promise: nil)
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
            let served = ServedFile(
                file: file, path: share.partPath, descriptor: SharedDescriptor(fd), pieceSize: share.layout.pieceSize, size: share.layout.fileSize, entry: nil
            )
            serving = (served, (share, watcher))
            seeder.record(file, servedOn: context.channel)
            logger.info("serving the verified pieces of a download in progress", metadata: ["pieces": "\(held.heldCount)/\(held.count)"])
            context.writeAndFlush(wrapOutboundOut(.bitfield(held.bytes)), promise: nil)
        } else {
            refuse(.fileNotFound, "this peer does not share \(file)", context: context)
        }
    }

    /// What a shared file's bitfield offers this client: a few pieces at a time while the first
    /// copy is leaving (super-seeding, see ``PieceOffers``), every piece otherwise.
    private func offer(_ file: FileID, pieceCount count: Int, pieceSize: Int, context: ChannelHandlerContext) -> Bitfield {
        guard let shared = seeder.offers(for: file, pieceCount: count, pieceSize: pieceSize) else { return .full(count: count) }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        let (connection, bits) = shared.open { pieces in
            eventLoop.execute {
                let (session, context) = bound.value
                guard context.channel.isActive else { return }
                for piece in pieces { context.write(session.wrapOutboundOut(.have(piece: UInt32(piece))), promise: nil) }
                context.flush()
            }
        }
        offers = (shared, connection)
        offerCheck = eventLoop.scheduleRepeatedTask(initialDelay: OfferWatch.interval, delay: OfferWatch.interval) { _ in
            let (session, _) = bound.value
            session.checkOffers()
        }
        return bits
    }

    /// A client that leaves its offers alone for two seconds while it asks for nothing here is served by another seed.
    private func checkOffers() {
        defer { recentRequests = 0 }
        guard let offers else { return }
        // A downloader that is still the file's only one half a second on is offered everything.
        if offers.shared.hasPendingOffers(offers.connection) { offers.shared.alone(offers.connection) }
        let quiet = recentRequests == 0 && queued.isEmpty && !busy
        if offerWatch.look(quiet: quiet, pending: offers.shared.hasPendingOffers(offers.connection)) {
            offers.shared.untouched(by: offers.connection)
        }
    }

    private func pieceCount(_ size: UInt64, _ pieceSize: Int) -> Int {
        Int((size + UInt64(pieceSize) - 1) / UInt64(pieceSize))
    }

    private func request(piece: UInt32, offset: UInt32, length: UInt32, context: ChannelHandlerContext) {
        guard let serving else { return refuse(.badRequest, "HELLO first", context: context) }
        let pieceSize = serving.file.pieceSize
        let start = UInt64(piece) * UInt64(pieceSize) + UInt64(offset)
        guard offset < pieceSize, UInt64(offset) + UInt64(length) <= UInt64(pieceSize), start + UInt64(length) <= serving.file.size else {
            return refuse(.badRequest, "piece \(piece) offset \(offset) length \(length) is outside the file", context: context)
        }
        if let partial = serving.partial, !partial.share.holds(Int(piece)) {
            return refuse(.badRequest, "piece \(piece) was not offered", context: context)
        }
        if let offers, !offers.shared.offered(Int(piece), to: offers.connection) {
            return refuse(.badRequest, "piece \(piece) was not offered", context: context)
        }
        recentRequests += 1
        let limit = seeder.limits.queuedRequestsPerConnection
        guard queued.count + (busy ? 1 : 0) < limit else {
            logger.warning("a client queued more requests than allowed", metadata: ["limit": "\(limit)"])
            return refuse(.tooManyRequests, "more than \(limit) requests waiting", context: context)
        }
        queued.append(Block(piece: Int(piece), offset: Int(offset), length: Int(length)))
        pump(context: context)
    }

    /// Starts reading the next queued block, unless one is under way or the client does not read.
    private func pump(context: ChannelHandlerContext) {
        guard !busy, let file = serving?.file, context.channel.isActive, context.channel.isWritable, let block = queued.popFirst() else { return }
        busy = true
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        file.read(block, allocator: context.channel.allocator, threadPool: threadPool, eventLoop: context.eventLoop)
            .whenComplete { result in
                let (session, context) = bound.value
                switch result {
                case .success(let data):
                    session.send(block, data, context: context)
                case .failure(let error):
                    session.busy = false
                    session.readFailed(error, context: context)
                }
            }
    }

    /// Hands a block read to the channel when the upload limit lets it go; drops it if the connection ended.
    private func send(_ block: Block, _ data: ByteBuffer, context: ChannelHandlerContext) {
        pacing = nil
        guard context.channel.isActive, let file = serving?.file.file else {
            busy = false
            return
        }
        let wait = seeder.pacer.waitBeforeSending(data.readableBytes)
        guard wait == .zero else {
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            pacing = context.eventLoop.scheduleTask(in: wait) {
                let (session, context) = bound.value
                session.send(block, data, context: context)
            }
            return
        }
        seeder.countUpload(data.readableBytes, of: file)
        context.writeAndFlush(wrapOutboundOut(.piece(piece: UInt32(block.piece), offset: UInt32(block.offset), data: data)), promise: nil)
        if let offers, let served = serving?.file, UInt64(block.piece) * UInt64(served.pieceSize) + UInt64(block.offset + block.length) == min(
            UInt64(block.piece + 1) * UInt64(served.pieceSize), served.size
        ) {
            offers.shared.sent(block.piece, to: offers.connection)
        }
        busy = false
        pump(context: context)
    }

    private func readFailed(_ error: Error, context: ChannelHandlerContext) {
        guard context.channel.isActive, let file = serving?.file else { return }
        switch error as? BlockReadFailure {
        case .cancelled?:
            return
        case .changedOnDisk?:
            logger.warning("stopped serving a file that changed on disk", metadata: ["path": "\(file.path)"])
            refuse(.fileChanged, "the shared copy changed on disk; it is no longer served", context: context)
        case .readError(let code)?:
            let reason = String(cString: strerror(code))
            logger.error("cannot read a served file", metadata: ["path": "\(file.path)", "error": "\(reason)"])
            refuse(.fileNotFound, "this peer cannot read \(file.file): \(reason)", context: context)
        case nil:
            // The thread pool has stopped: the peer is shutting down.
            context.close(promise: nil)
        }
    }

    /// Sends a REJECT, drops whatever is queued and closes the connection.
    private func refuse(_ code: FailureCode, _ message: String, context: ChannelHandlerContext) {
        queued.removeAll()
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.reject(code: code, message: message))).whenComplete { _ in channel.close(promise: nil) }
    }
}
