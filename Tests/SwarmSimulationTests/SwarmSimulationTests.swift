import Testing

@testable import SwarmSimulation

/// The simulator's engine: the fluid model's rates, virtual time against the bound, churn.
@Suite struct FluidNetworkTests {
    @Test func twoFlowsOnOneUplinkEachGetHalf() {
        var network = FluidNetwork(up: [1000, 5000, 5000], down: [5000, 5000, 5000])
        let first = network.start(from: 0, to: 1, bytes: 100, now: 0)
        let second = network.start(from: 0, to: 2, bytes: 100, now: 0)
        let changed = network.reallocate(now: 0)
        #expect(Set(changed) == [first, second])
        #expect(network.rate(of: first) == 500)
        #expect(network.rate(of: second) == 500)
        // 100 bytes at 500 bytes/s: 0.2 s.
        #expect(network.completion(of: first) == 200_000_000)
    }

    @Test func capacityALimitedFlowLeavesGoesToTheOthers() {
        var network = FluidNetwork(up: [1000, 5000, 5000], down: [5000, 5000, 200])
        let wide = network.start(from: 0, to: 1, bytes: 100, now: 0)
        let narrow = network.start(from: 0, to: 2, bytes: 100, now: 0)
        _ = network.reallocate(now: 0)
        #expect(network.rate(of: narrow) == 200)
        #expect(network.rate(of: wide) == 800)
    }

    @Test func anEndedFlowFreesItsShareAndProgressIsKept() {
        var network = FluidNetwork(up: [1000, 5000, 5000], down: [5000, 5000, 5000])
        let first = network.start(from: 0, to: 1, bytes: 1000, now: 0)
        let second = network.start(from: 0, to: 2, bytes: 1000, now: 0)
        _ = network.reallocate(now: 0)
        network.stop(second)
        #expect(network.isDirty)
        // Half a second at 500 bytes/s: 250 bytes sent, 750 left at the full 1000 bytes/s.
        let changed = network.reallocate(now: 500_000_000)
        #expect(changed == [first])
        #expect(network.rate(of: first) == 1000)
        #expect(network.completion(of: first) == 1_250_000_000)
    }

    @Test func aNewFlowWaitsForTheNextReallocation() {
        var network = FluidNetwork(up: [1000, 5000], down: [5000, 5000])
        let flow = network.start(from: 0, to: 1, bytes: 100, now: 0)
        #expect(network.completion(of: flow) == nil)
        _ = network.reallocate(now: 0)
        #expect(network.completion(of: flow) == 100_000_000)
    }
}

@Suite struct SwarmSimulationTests {
    /// One seeder, one leecher, every byte of the cap payload: the file takes F/min(u, d), plus a
    /// few round trips and a little per piece.
    @Test func oneToOneTakesTheFileOverTheNarrowerLink() throws {
        var scenario = Scenario(leechers: 1, fileBytes: 16 << 20)
        scenario.payloadFraction = 1
        scenario.seedUpBits = 100e6
        scenario.downBits = 40e6
        let outcome = try SwarmSimulation(scenario).run(limitSeconds: 60)
        let expected = Double(16 << 20) * 8 / 40e6
        #expect(outcome.unfinished == 0)
        #expect(abs(outcome.time - expected) / expected < 0.02, "took \(outcome.time) s, the link allows \(expected) s")
        #expect(outcome.seederUploadRatio >= 1 && outcome.seederUploadRatio < 1.01)
    }

    @Test func aSwarmBeatsTheSeedersUplinkAlone() throws {
        let scenario = Scenario(leechers: 8, fileBytes: 16 << 20)
        let outcome = try SwarmSimulation(scenario).run(limitSeconds: 120)
        #expect(outcome.unfinished == 0)
        // Eight copies through the seeder's uplink alone would take 8 × F/u_seed.
        #expect(outcome.time < 8 * Double(16 << 20) * 8 / scenario.seedUpBits / 2)
        #expect(outcome.time >= scenario.lowerBound)
    }

    @Test func churnDoesNotStallTheOthers() throws {
        var scenario = Scenario(leechers: 16, fileBytes: 8 << 20)
        scenario.churn = 0.25
        let outcome = try SwarmSimulation(scenario).run(limitSeconds: 300)
        #expect(outcome.failed == 0)
        #expect(outcome.unfinished == 0)
        #expect(outcome.completions.count == 16)
    }

    @Test func aSeederThatLeavesAfterOneCopyLeavesAWholeSwarm() throws {
        var scenario = Scenario(leechers: 8, fileBytes: 8 << 20)
        scenario.seedLeavesAfterOneCopy = true
        let outcome = try SwarmSimulation(scenario).run(limitSeconds: 300)
        #expect(outcome.unfinished == 0)
        #expect(outcome.seederUploadRatio < 1.01 + Double(256 << 10) / Double(8 << 20))
    }

    @Test func theSameSeedGivesTheSameRun() throws {
        var scenario = Scenario(leechers: 6, fileBytes: 4 << 20)
        scenario.slowEvery = 3
        scenario.seed = 42
        let first = try SwarmSimulation(scenario).run(limitSeconds: 120)
        let second = try SwarmSimulation(scenario).run(limitSeconds: 120)
        #expect(first.completions == second.completions)
        #expect(first.events == second.events)
    }
}
