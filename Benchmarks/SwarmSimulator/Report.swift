import Foundation
import SwarmSimulation

/// Runs scenarios and prints one line each, with the simulation's own cost.
enum Report {
    static let header = "| swarm | T_min | time | time / T_min | seeder upload / file | p50 / p99 leecher | unfinished | wall clock | peak memory |\n|---|---|---|---|---|---|---|---|---|"

    /// Runs `scenario` and prints its line; returns the outcome.
    @discardableResult
    static func line(_ name: String, _ scenario: Scenario, lab: String? = nil) -> Outcome? {
        let clock = ContinuousClock()
        let start = clock.now
        let simulation: SwarmSimulation
        do {
            simulation = try SwarmSimulation(scenario)
        } catch {
            print("| \(name) | cannot be set up: \(error) |")
            return nil
        }
        let outcome = simulation.run(limitSeconds: max(120, 20 * scenario.lowerBound))
        let wall = clock.now - start
        let seconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
        var cells = [
            name, format(scenario.lowerBound) + " s", format(outcome.time) + " s", "**" + format(outcome.ratio) + " ×**",
            format(outcome.seederUploadRatio) + " ×", format(outcome.percentile(0.5)) + " / " + format(outcome.percentile(0.99)) + " s",
            outcome.unfinished == 0 ? "0" : "\(outcome.unfinished) (\(outcome.failed) failed)", format(seconds) + " s", "\(peakMemoryMiB()) MiB",
        ]
        if let lab { cells.append(lab) }
        print("| " + cells.joined(separator: " | ") + " |")
        return outcome
    }

    static func format(_ value: Double) -> String { String(format: "%.2f", value) }

    /// The process's peak resident memory so far (VmHWM), in MiB.
    static func peakMemoryMiB() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        else { return 0 }
        return kib / 1024
    }

    static func scenario(_ leechers: Int, mib: UInt64, seed: UInt64, _ change: (inout Scenario) -> Void = { _ in }) -> Scenario {
        var scenario = Scenario(leechers: leechers, fileBytes: mib << 20)
        scenario.seed = seed
        change(&scenario)
        return scenario
    }

    /// The lab validation, then the large swarms.
    static func run(quick: Bool, seed: UInt64) {
        print("Lab validation (100 Mbit/s up, 400 down; the lab's figures from docs/BENCHMARKS.md, run 2, release build)\n")
        print(header.replacingOccurrences(of: "peak memory |\n", with: "peak memory | lab |\n") + "---|")
        let labCases: [(String, Scenario, String, Double)] = [
            ("1 + 8, 128 MiB", scenario(8, mib: 128, seed: seed), "1.15–1.22 ×", 1.185),
            ("1 + 16, 64 MiB", scenario(16, mib: 64, seed: seed), "1.49–1.89 ×", 1.69),
            ("1 + 8, a quarter at 20 Mbit/s up", scenario(8, mib: 128, seed: seed) { $0.slowEvery = 4 }, "1.45 ×", 1.45),
            ("1 + 8, seeder leaves after one copy", scenario(8, mib: 128, seed: seed) { $0.seedLeavesAfterOneCopy = true }, "1.12–1.13 ×", 1.125),
        ]
        var quotients: [String] = []
        for (name, scenario, lab, labMid) in labCases {
            if let outcome = line(name, scenario, lab: lab) {
                quotients.append("\(name): \(format(outcome.ratio / labMid))")
            }
        }
        print("\nsimulated ÷ lab (middle of the lab's range): " + quotients.joined(separator: "; "))
        let sizes = quick ? [100] : [100, 1000, 2600]
        for hosts in sizes {
            // The work grows with N × pieces × connections: the large swarms take smaller files
            // (16 MiB = 64 pieces at N = 1,000, 8 MiB at 2,600) to finish in minutes.
            let mib: UInt64 = hosts >= 2600 ? 8 : hosts >= 1000 ? 16 : 128
            print("\nN = \(hosts), \(mib) MiB, 100 Mbit/s up, 400 down\n")
            print(header)
            line("homogeneous", scenario(hosts, mib: mib, seed: seed))
            line("a quarter at 20 Mbit/s up", scenario(hosts, mib: mib, seed: seed) { $0.slowEvery = 4 })
            line("churn 10 % (leave early, as many join late)", scenario(hosts, mib: mib, seed: seed) { $0.churn = 0.1 })
        }
    }
}
