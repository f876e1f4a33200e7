import Foundation
import SwarmSimulation

/// `SwarmSimulator [--hosts N] [--file-mib F] [--up-mbit U] [--down-mbit D] [--hetero] [--churn FRACTION]
/// [--seed-leaves] [--latency-ms L] [--seed S] [--report]`: simulates one swarm (or, with
/// `--report`, the table of docs/BENCHMARKS.md) on the production download state machine.
enum SimulatorCommand {
    static let usage = """
        usage: SwarmSimulator [--hosts N] [--file-mib F] [--piece-kib P] [--up-mbit U] [--down-mbit D] [--hetero]
                              [--churn FRACTION] [--seed-leaves] [--latency-ms L] [--realloc-ms R]
                              [--window-kib W] [--copies C] [--requests R] [--seed S]
               SwarmSimulator --report [--quick]
          --hosts N        leechers besides the one seeder (default 8)
          --file-mib F     file size in MiB (default 128)
          --up-mbit U      every host's upload cap (default 100); --down-mbit D its download cap (default 400)
          --hetero         every fourth leecher uploads at 20 Mbit/s
          --churn FRACTION this fraction of the leechers leaves before finishing, as many join late
          --seed-leaves    the seeder leaves once it has uploaded one copy
          --latency-ms L   one-way delay of every message (default 1)
          --realloc-ms R   give flows new rates at most every R ms (default 0: whenever flows start or end)
          --window-kib W   super-seed-window (default 4096; 0 turns super-seeding off)
          --copies C       super-seed-copies (default 1)
          --requests R     requests-per-peer (default 8)
          --report         runs the lab validation and the N = 100 / 1,000 / 2,600 table
        """

    static func main() {
        var arguments = Array(CommandLine.arguments.dropFirst())
        var scenario = Scenario(leechers: 8, fileBytes: 128 << 20)
        var report = false
        var quick = false
        func value(_ name: String) -> Double {
            guard !arguments.isEmpty, let number = Double(arguments.removeFirst()), number >= 0 else { fail("\(name) needs a non-negative number") }
            return number
        }
        while !arguments.isEmpty {
            let argument = arguments.removeFirst()
            switch argument {
            case "--hosts": scenario.leechers = Int(value(argument))
            case "--file-mib": scenario.fileBytes = UInt64(value(argument) * 1_048_576)
            case "--piece-kib": scenario.pieceSize = Int(value(argument)) * 1024
            case "--up-mbit":
                scenario.upBits = value(argument) * 1e6
                scenario.seedUpBits = scenario.upBits
            case "--down-mbit":
                scenario.downBits = value(argument) * 1e6
                scenario.seedDownBits = scenario.downBits
            case "--hetero": scenario.slowEvery = 4
            case "--churn": scenario.churn = min(value(argument), 0.5)
            case "--seed-leaves": scenario.seedLeavesAfterOneCopy = true
            case "--latency-ms": scenario.latencyNanoseconds = Int64(value(argument) * 1e6)
            case "--realloc-ms": scenario.reallocationNanoseconds = Int64(value(argument) * 1e6)
            case "--window-kib": scenario.limits.superSeedWindowBytes = Int(value(argument)) * 1024
            case "--copies": scenario.limits.superSeedCopies = max(1, Int(value(argument)))
            case "--requests": scenario.limits.requestsPerPeer = max(1, Int(value(argument)))
            case "--seed": scenario.seed = UInt64(value(argument))
            case "--report": report = true
            case "--quick": quick = true
            case "--help", "-h":
                print(usage)
                return
            default: fail("unknown option \(argument)")
            }
        }
        guard scenario.leechers >= 1, scenario.fileBytes > 0 else { fail("a swarm needs at least one leecher and a file") }
        if report {
            Report.run(quick: quick, seed: scenario.seed)
        } else {
            print(Report.header)
            Report.line("custom", scenario)
        }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("SwarmSimulator: \(message)\n\(usage)\n".utf8))
        exit(2)
    }
}

SimulatorCommand.main()
