import Pieces
import NIOConcurrencyHelpers
import Wire

/// A file this peer is still downloading, served to other peers piece by piece: only pieces
/// verified and written are advertised, and every connection serving it is told of each new one.
final class PartialShare: Sendable {
    let file: FileID
    let partPath: String
    let layout: PieceLayout
    /// The `.mtorrent`'s signed header, announced to the trackers (nil for a version 1 file).
    let proof: [UInt8]?
    private let state: NIOLockedValueBox<State>

    private struct State {
        var held: Bitfield
        var watchers: [Int: @Sendable (Int) -> Void] = [:]
        var nextWatcher = 0
    }

    init(file: FileID, partPath: String, layout: PieceLayout, proof: [UInt8]?, held: Bitfield) {
        self.file = file
        self.partPath = partPath
        self.layout = layout
        self.proof = proof
        state = NIOLockedValueBox(State(held: held))
    }

    var heldCount: Int { state.withLockedValue { $0.held.heldCount } }

    func holds(_ piece: Int) -> Bool { state.withLockedValue { $0.held.contains(piece) } }

    /// Records a verified, written piece and tells every watcher.
    func add(_ piece: Int) {
        let watchers = state.withLockedValue { state -> [@Sendable (Int) -> Void] in
            guard state.held.insert(piece) else { return [] }
            return Array(state.watchers.values)
        }
        for watcher in watchers { watcher(piece) }
    }

    /// The pieces held now, and a token; `onNewPiece` is called for every piece added after.
    func watch(_ onNewPiece: @escaping @Sendable (Int) -> Void) -> (held: Bitfield, token: Int) {
        state.withLockedValue { state in
            let token = state.nextWatcher
            state.nextWatcher += 1
            state.watchers[token] = onNewPiece
            return (state.held, token)
        }
    }

    func unwatch(_ token: Int) {
        _ = state.withLockedValue { $0.watchers.removeValue(forKey: token) }
    }
}

/// The downloads in progress that this peer serves from, by file.
final class PartialShares: Sendable {
    private let shares = NIOLockedValueBox<[FileID: PartialShare]>([:])

    func insert(_ share: PartialShare) { shares.withLockedValue { $0[share.file] = share } }

    func remove(_ file: FileID) { _ = shares.withLockedValue { $0.removeValue(forKey: file) } }

    func share(for file: FileID) -> PartialShare? { shares.withLockedValue { $0[file] } }

    /// Every download in progress.
    var all: [PartialShare] { shares.withLockedValue { Array($0.values) } }
}
