import Foundation
import Logging
import MTorrentFormat
import NIOCore
import NIOPosix
import PKI
import Pieces
import TLS
import Wire

/// What a finished download did.
public struct DownloadReport: Sendable {
    public let bytes: UInt64
    public let seconds: Double
    public let verifiedPieces: Int
    public let sources: [String]
    public let bannedPeers: [String]
}

/// Fetches a file described by a verified `.mtorrent` from the holders a tracker listed. Each
/// holder must prove, in its TLS handshake, the identity the tracker recorded for its address.
/// Every piece is checked against the signed hash before it is written; a holder that sends a
/// bad piece is dropped and banned for this download, and the next holder continues from the
/// pieces still missing.
final class Downloader: @unchecked Sendable {
    private let torrent: MTorrent
    private let tls: TLSContext
    private let group: EventLoopGroup
    private let threadPool: NIOThreadPool
    private let logger: Logger
    private let progress: (@Sendable (UInt64, UInt64) -> Void)?

    /// Outstanding block requests per connection, so the pipe never drains.
    static let pipelineDepth = 8

    /// Pieces being hashed and written (on the thread pool) while more arrive.
    static let piecesInProcessing = 4

    init(
        torrent: MTorrent, tls: TLSContext, group: EventLoopGroup, threadPool: NIOThreadPool, logger: Logger,
        progress: (@Sendable (UInt64, UInt64) -> Void)?
    ) {
        self.torrent = torrent
        self.tls = tls
        self.group = group
        self.threadPool = threadPool
        self.logger = logger
        self.progress = progress
    }

    func run(holders: [HolderRecord], into part: PartFile) async throws(CommandFailure) -> DownloadReport {
        let started = Date()
        var missing = Set(0..<torrent.layout.pieceCount)
        var done: UInt64 = 0
        var sources: [String] = []
        var banned: [String] = []
        for holder in holders where !missing.isEmpty {
            let before = missing.count
            do {
                try await fetch(from: holder, missing: &missing, done: &done, into: part)
            } catch let failure as BadPiece {
                banned.append(holder.name)
                logger.error("banned for this download: \(failure.reason)", metadata: [
                    "peer": "\(holder.name)", "address": "\(holder.address)", "piece": "\(failure.piece)", "file": "\(torrent.rootHex)",
                ])
            } catch {
                logger.warning("holder failed; trying the next one", metadata: ["peer": "\(holder.name)", "address": "\(holder.address)", "error": "\(error)"])
            }
            if missing.count < before { sources.append("\(holder.name)@\(holder.address)") }
        }
        guard missing.isEmpty else {
            throw CommandFailure("DOWNLOAD_FAILED", "\(missing.count) of \(torrent.layout.pieceCount) pieces could not be fetched from \(holders.count) holder(s)")
        }
        return DownloadReport(
            bytes: torrent.layout.fileSize, seconds: Date().timeIntervalSince(started), verifiedPieces: torrent.layout.pieceCount,
            sources: sources, bannedPeers: banned
        )
    }

    private func fetch(from holder: HolderRecord, missing: inout Set<Int>, done: inout UInt64, into part: PartFile) async throws {
        guard let address = TrackerAddress(holder.address) else { throw CommandFailure("DOWNLOAD_FAILED", "bad holder address \(holder.address)") }
        let host = address.host.hasPrefix("[") ? String(address.host.dropFirst().dropLast()) : address.host
        let identityPromise = group.next().makePromise(of: VerifiedIdentity.self)
        let tls = self.tls
        let channel: NIOAsyncChannel<PeerFrame, PeerFrame>
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(5))
                .connect(host: host, port: Int(address.port)) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([
                            TLSHandler(context: tls, side: .client(dialedHost: host)),
                            IdleStateHandler(readTimeout: .seconds(30)),
                            IdentityCapture(promise: identityPromise),
                            ByteToMessageHandler(PeerFrameDecoder()),
                            MessageToByteHandler(PeerFrameEncoder()),
                        ])
                        return try NIOAsyncChannel<PeerFrame, PeerFrame>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            identityPromise.fail(error)
            throw error
        }
        let identity = try await identityPromise.futureResult.get()
        guard identity.fingerprint == holder.fingerprint, identity.name == holder.name else {
            try? await channel.channel.close()
            throw CommandFailure("ACCESS_DENIED", "\(holder.address) proved to be '\(identity.name)', not '\(holder.name)' as the tracker recorded")
        }
        let layout = torrent.layout
        let hashes = torrent.pieceHashes
        let file = FileID(bytes: torrent.root)!
        try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(.hello(file: file))
            var frames = inbound.makeAsyncIterator()
            guard let first = try await frames.next() else { throw WireError.closed }
            guard case .bitfield(let bits) = first else {
                if case .reject(let code, let message) = first { throw CommandFailure(code, message) }
                throw WireError.malformed("expected a bitfield")
            }
            let wanted = missing.sorted().filter { $0 / 8 < bits.count && bits[$0 / 8] & (0x80 >> UInt8($0 % 8)) != 0 }
            let blockSize = min(layout.pieceSize, Int(PeerFrame.maximumBlockLength))
            var blocks: [(piece: Int, offset: Int, length: Int)] = []
            for piece in wanted {
                for offset in stride(from: 0, to: layout.length(ofPiece: piece), by: blockSize) {
                    blocks.append((piece, offset, min(blockSize, layout.length(ofPiece: piece) - offset)))
                }
            }
            var nextToSend = 0
            var nextToReceive = 0
            var assembling = ByteBuffer()
            var processing: [(piece: Int, result: EventLoopFuture<Void>)] = []
            func settle(_ item: (piece: Int, result: EventLoopFuture<Void>)) async throws {
                try await item.result.get()
                missing.remove(item.piece)
                done += UInt64(layout.length(ofPiece: item.piece))
                progress?(done, layout.fileSize)
            }
            while nextToReceive < blocks.count {
                while nextToSend < blocks.count, nextToSend - nextToReceive < Self.pipelineDepth {
                    let block = blocks[nextToSend]
                    try await outbound.write(.request(piece: UInt32(block.piece), offset: UInt32(block.offset), length: UInt32(block.length)))
                    nextToSend += 1
                }
                guard let frame = try await frames.next() else { throw WireError.closed }
                let expected = blocks[nextToReceive]
                guard case .piece(let piece, let offset, var data) = frame, Int(piece) == expected.piece, Int(offset) == expected.offset,
                      data.readableBytes == expected.length
                else {
                    if case .reject(let code, let message) = frame { throw CommandFailure(code, message) }
                    throw BadPiece(piece: expected.piece, reason: "sent something other than the block asked for")
                }
                nextToReceive += 1
                let pieceLength = layout.length(ofPiece: expected.piece)
                let whole: ByteBuffer
                if expected.offset == 0, expected.length == pieceLength {
                    whole = data
                } else {
                    assembling.writeBuffer(&data)
                    guard assembling.readableBytes == pieceLength else { continue }
                    whole = assembling
                    assembling = ByteBuffer()
                }
                // Hash and write on the thread pool while the next blocks arrive.
                let index = expected.piece
                let expectedHash = hashes[index]
                let offsetInFile = layout.offset(ofPiece: index)
                let result = threadPool.runIfActive(eventLoop: group.next()) { () throws in
                    let digest = SHA256Digest()
                    whole.withUnsafeReadableBytes { digest.update($0) }
                    guard digest.finish() == expectedHash else { throw BadPiece(piece: index, reason: "sent a piece that fails its signed hash") }
                    try whole.withUnsafeReadableBytes { bytes throws(CommandFailure) in try part.write(bytes, at: offsetInFile) }
                }
                processing.append((index, result))
                if processing.count >= Self.piecesInProcessing { try await settle(processing.removeFirst()) }
            }
            for item in processing { try await settle(item) }
        }
    }
}

/// A holder sent a piece that does not match the signed hash, or not the block asked for.
struct BadPiece: Error {
    let piece: Int
    let reason: String
}

/// Hands the verified identity from the TLS handshake to whoever waits for it.
final class IdentityCapture: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let promise: EventLoopPromise<VerifiedIdentity>

    init(promise: EventLoopPromise<VerifiedIdentity>) {
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSEvent.handshakeCompleted(let identity)? = event as? TLSEvent {
            promise.succeed(identity)
        } else if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        promise.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(WireError.closed)
        context.fireChannelInactive()
    }
}
