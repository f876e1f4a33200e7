import Peer
import Pieces

/// One swarm to simulate: a seeder, `leechers` downloaders, their links, churn and the peers'
/// limits. Rates are in bits per second as the lab's caps are given; ``payloadFraction`` of a cap
/// carries payload (the lab's caps count Ethernet, IP, TCP and TLS headers).
public struct Scenario: Sendable {
    public var leechers: Int
    public var fileBytes: UInt64
    /// Piece size; nil takes the size `mtorrent create` picks for the file.
    public var pieceSize: Int?
    public var seedUpBits: Double = 100e6
    public var seedDownBits: Double = 400e6
    public var upBits: Double = 100e6
    public var downBits: Double = 400e6
    /// Every `slowEvery`-th leecher (1-based: leechers slowEvery, 2·slowEvery, …) sends at `slowUpBits`; 0 for none.
    public var slowEvery = 0
    public var slowUpBits: Double = 20e6
    /// This fraction of the leechers leaves at a random time before finishing, and as many more
    /// join late (uniformly in the first half of T_min).
    public var churn: Double = 0
    /// The seeder leaves once it has uploaded one copy's worth.
    public var seedLeavesAfterOneCopy = false
    /// One-way delay of every message, in nanoseconds.
    public var latencyNanoseconds: Int64 = 1_000_000
    public var payloadFraction: Double = 0.95
    /// Bytes per second a leecher hashes and writes; 0 verifies instantly.
    public var hashBytesPerSecond: Double = 0
    /// Flows that start or end are given rates at most this often (0: at once).
    public var reallocationNanoseconds: Int64 = 0
    public var limits = PeerLimits()
    public var seed: UInt64 = 1

    public init(leechers: Int, fileBytes: UInt64) {
        self.leechers = leechers
        self.fileBytes = fileBytes
    }

    /// Upload caps of the leechers, in bits per second.
    public var leecherUpBits: [Double] {
        (1...max(leechers, 1)).prefix(leechers).map { slowEvery > 0 && $0 % slowEvery == 0 ? slowUpBits : upBits }
    }

    /// The Kumar–Ross fluid bound on the last leecher's completion, in seconds, on the nominal caps:
    /// max(F/u_seed, F/d_min, N·F/(u_seed + Σu_i)).
    public var lowerBound: Double {
        let bits = Double(fileBytes) * 8
        let ups = leecherUpBits
        return max(bits / seedUpBits, bits / min(downBits, seedDownBits), Double(leechers) * bits / (seedUpBits + ups.reduce(0, +)))
    }

    public var resolvedPieceSize: Int { pieceSize ?? PieceLayout.defaultPieceSize(forFileSize: fileBytes) }
}

/// What one simulated run gave.
public struct Outcome: Sendable {
    public var scenario: Scenario
    /// Virtual seconds until the last leecher that stayed finished (or the run stopped).
    public var time: Double
    /// Completion times of the leechers that finished, in virtual seconds from the start, sorted.
    public var completions: [Double]
    /// Leechers that were to finish and did not (failed, or still running when the run stopped).
    public var unfinished: Int
    /// Leechers whose download failed.
    public var failed: Int
    public var seederUploadedBytes: Double
    public var events: Int
    public var reallocations: Int

    public var ratio: Double { time / scenario.lowerBound }
    public var seederUploadRatio: Double { seederUploadedBytes / Double(scenario.fileBytes) }

    /// The completion time below which `fraction` of the finished leechers completed.
    public func percentile(_ fraction: Double) -> Double {
        guard !completions.isEmpty else { return .nan }
        let index = min(completions.count - 1, Int((fraction * Double(completions.count)).rounded(.up)) - 1)
        return completions[max(0, index)]
    }
}
