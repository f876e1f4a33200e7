import NIOCore
import Peer
import Pieces
import Wire

/// The holder's side: what the production ``Seeder`` and its sessions do with HELLO and REQUEST.
extension SwarmSimulation {
    func received(_ frame: PeerFrame, on id: Int) {
        switch frame {
        case .hello:
            hello(on: id)
        case .request(let piece, let offset, let length):
            request(piece: Int(piece), offset: Int(offset), length: Int(length), on: id)
        default:
            refuse(.badRequest, "only HELLO and REQUEST frames are served", on: id)
        }
    }

    private func hello(on id: Int) {
        let holder = connections[id].holder
        let downloader = connections[id].downloader
        guard connections[id].session == nil else { return refuse(.badRequest, "one file per connection", on: id) }
        guard takeSlot(at: holder, for: downloader) else {
            return refuse(.busy, "all upload slots are in use; try again later", on: id)
        }
        hosts[holder].serving.insert(id)
        if hosts[holder].isComplete, scenario.limits.superSeedWindowBytes > 0 {
            if hosts[holder].offers == nil {
                hosts[holder].offers = PieceOffers(
                    pieceCount: layout.pieceCount, pieceSize: layout.pieceSize, windowBytes: scenario.limits.superSeedWindowBytes,
                    copies: scenario.limits.superSeedCopies, random: &random
                )
            }
            let offer = hosts[holder].nextOfferConnection
            hosts[holder].nextOfferConnection += 1
            hosts[holder].offerConnections[offer] = id
            let bits = hosts[holder].offers!.opened(offer)
            connections[id].session = Session(partial: false, offer: offer, slotTaken: true)
            enqueue(.bitfield(bits.bytes), on: id)
            schedule(.offerLook(id), at: now + Int64(OfferWatch.interval.nanoseconds))
        } else {
            connections[id].session = Session(partial: !hosts[holder].isComplete, offer: nil, slotTaken: true)
            enqueue(.bitfield(hosts[holder].have.bytes), on: id)
        }
    }

    private func request(piece: Int, offset: Int, length: Int, on id: Int) {
        let holder = connections[id].holder
        guard let session = connections[id].session else { return refuse(.badRequest, "HELLO first", on: id) }
        guard piece < layout.pieceCount, offset + length <= layout.length(ofPiece: piece), length <= zeros.readableBytes else {
            return refuse(.badRequest, "outside the file", on: id)
        }
        if session.partial, !hosts[holder].have.contains(piece) { return refuse(.badRequest, "piece \(piece) was not offered", on: id) }
        if let offer = session.offer, hosts[holder].offers?.offered(piece, to: offer) != true {
            return refuse(.badRequest, "piece \(piece) was not offered", on: id)
        }
        connections[id].session?.recentRequests += 1
        guard connections[id].blocksQueued < scenario.limits.queuedRequestsPerConnection else {
            return refuse(.tooManyRequests, "too many requests waiting", on: id)
        }
        connections[id].blocksQueued += 1
        enqueue(.piece(piece: UInt32(piece), offset: UInt32(offset), data: zeros.getSlice(at: 0, length: length)!), on: id)
    }

    private func refuse(_ code: FailureCode, _ message: String, on id: Int) {
        connections[id].outbox.removeAll()
        connections[id].blocksQueued = 0
        stopSending(id)
        enqueue(.reject(code: code, message: message), on: id)
    }

    private func takeSlot(at holder: Int, for downloader: Int) -> Bool {
        guard hosts[holder].slotsInUse < scenario.limits.uploadSlots, hosts[holder].slotsByPeer[downloader, default: 0] < scenario.limits.uploadsPerPeer else {
            return false
        }
        hosts[holder].slotsInUse += 1
        hosts[holder].slotsByPeer[downloader, default: 0] += 1
        return true
    }

    // MARK: - The holder-to-downloader stream

    /// Puts a frame behind the others on the connection.
    func enqueue(_ frame: PeerFrame, on id: Int) {
        guard connections[id].open else { return }
        connections[id].outbox.append(frame)
        pump(id, afterBlock: false)
    }

    private static func bytes(of frame: PeerFrame) -> Int? {
        if case .piece(_, _, let data) = frame { return data.readableBytes }
        return nil
    }

    /// Sends the frames that take no bandwidth from the front, and keeps the flow going while a block is in front.
    private func pump(_ id: Int, afterBlock: Bool) {
        while let head = connections[id].outbox.first, Self.bytes(of: head) == nil {
            connections[id].outbox.removeFirst()
            later(.toDownloader(id, head))
        }
        guard let head = connections[id].outbox.first, let bytes = Self.bytes(of: head) else {
            stopSending(id)
            return
        }
        if let flow = connections[id].flow {
            guard afterBlock else { return }
            network.next(flow, bytes: Double(bytes), now: now)
            if let done = network.completion(of: flow) { schedule(.flowDone(flow: flow, version: network.version(of: flow)), at: done) }
        } else {
            let flow = network.start(from: connections[id].holder, to: connections[id].downloader, bytes: Double(bytes), now: now)
            flowOwner[flow] = id
            connections[id].flow = flow
        }
    }

    func stopSending(_ id: Int) {
        guard let flow = connections[id].flow else { return }
        network.stop(flow)
        flowOwner[flow] = nil
        connections[id].flow = nil
    }

    /// The block in front is through: it reaches the downloader one latency later.
    func blockSent(on id: Int) {
        guard let frame = connections[id].outbox.popFirst(), case .piece(let piece, let offset, let data) = frame else { return }
        connections[id].blocksQueued -= 1
        let holder = connections[id].holder
        hosts[holder].uploaded += Double(data.readableBytes)
        later(.toDownloader(id, frame))
        let ends = Int(offset) + data.readableBytes == layout.length(ofPiece: Int(piece))
        if ends, let offer = connections[id].session?.offer, var offers = hosts[holder].offers {
            let news = offers.sent(Int(piece), to: offer)
            hosts[holder].offers = offers
            deliver(news, from: holder)
        }
        pump(id, afterBlock: true)
        if holder == 0, scenario.seedLeavesAfterOneCopy, hosts[0].uploaded >= Double(scenario.fileBytes) { leave(0) }
    }

    // MARK: - Super-seeding

    private func deliver(_ offers: [PieceOffers.Connection: [Int]], from holder: Int) {
        for (offer, pieces) in offers.sorted(by: { $0.key < $1.key }) {
            guard let id = hosts[holder].offerConnections[offer] else { continue }
            for piece in pieces { enqueue(.have(piece: UInt32(piece)), on: id) }
        }
    }

    /// What ``SeedSession`` does twice a second for a connection it super-seeds.
    func lookAtOffers(_ id: Int) {
        let holder = connections[id].holder
        guard connections[id].open, hosts[holder].alive, let session = connections[id].session, let offer = session.offer,
              var offers = hosts[holder].offers
        else { return }
        if offers.hasPendingOffers(offer) {
            let news = offers.alone(offer)
            hosts[holder].offers = offers
            deliver(news, from: holder)
            offers = hosts[holder].offers!
        }
        let quiet = session.recentRequests == 0 && connections[id].blocksQueued == 0
        connections[id].session?.recentRequests = 0
        if connections[id].session!.watch.look(quiet: quiet, pending: offers.hasPendingOffers(offer)) {
            let news = offers.untouched(by: offer)
            hosts[holder].offers = offers
            deliver(news, from: holder)
        }
        schedule(.offerLook(id), at: now + Int64(OfferWatch.interval.nanoseconds))
    }

    /// The downloader closed the connection: the holder's session ends.
    func endSession(_ id: Int) {
        let holder = connections[id].holder
        stopSending(id)
        connections[id].outbox.removeAll()
        connections[id].blocksQueued = 0
        guard let session = connections[id].session else { return }
        connections[id].session = nil
        hosts[holder].serving.remove(id)
        if session.slotTaken {
            hosts[holder].slotsInUse -= 1
            let downloader = connections[id].downloader
            hosts[holder].slotsByPeer[downloader, default: 1] -= 1
            if hosts[holder].slotsByPeer[downloader] == 0 { hosts[holder].slotsByPeer[downloader] = nil }
        }
        if let offer = session.offer {
            hosts[holder].offers?.closed(offer)
            hosts[holder].offerConnections[offer] = nil
            if hosts[holder].offerConnections.isEmpty { hosts[holder].offers = nil }
        }
    }
}
