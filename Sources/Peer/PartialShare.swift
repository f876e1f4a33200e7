import Pieces
import Synchronization
import Wire

/// A file this peer is still downloading, served to other peers piece by piece: only pieces
/// verified and written are advertised, and every connection serving it is told of each new one.
final class PartialShare: Sendable {
    let file: FileID
    let partPath: String
    let layout: PieceLayout
    private let state: Mutex<State>

    private struct State {
        var held: Bitfield
        var watchers: [Int: @Sendable (Int) -> Void] = [:]
        var nextWatcher = 0
    }

    init(file: FileID, partPath: String, layout: PieceLayout, held: Bitfield) {
        self.file = file
        self.partPath = partPath
        self.layout = layout
        state = Mutex(State(held: held))
    }

    var heldCount: Int { state.withLock { $0.held.heldCount } }

    func holds(_ piece: Int) -> Bool { state.withLock { $0.held.contains(piece) } }

    /// Records a verified, written piece and tells every watcher.
    func add(_ piece: Int) {
        let watchers = state.withLock { state -> [@Sendable (Int) -> Void] in
            guard state.held.insert(piece) else { return [] }
            return Array(state.watchers.values)
        }
        for watcher in watchers { watcher(piece) }
    }

    /// The pieces held now, and a token; `onNewPiece` is called for every piece added after.
    func watch(_ onNewPiece: @escaping @Sendable (Int) -> Void) -> (held: Bitfield, token: Int) {
        state.withLock { state in
            let token = state.nextWatcher
            state.nextWatcher += 1
            state.watchers[token] = onNewPiece
            return (state.held, token)
        }
    }

    func unwatch(_ token: Int) {
        _ = state.withLock { $0.watchers.removeValue(forKey: token) }
    }
}

/// The downloads in progress that this peer serves from, by file.
final class PartialShares: Sendable {
    private let shares = Mutex<[FileID: PartialShare]>([:])

    func insert(_ share: PartialShare) { shares.withLock { $0[share.file] = share } }

    func remove(_ file: FileID) { _ = shares.withLock { $0.removeValue(forKey: file) } }

    func share(for file: FileID) -> PartialShare? { shares.withLock { $0[file] } }
}
