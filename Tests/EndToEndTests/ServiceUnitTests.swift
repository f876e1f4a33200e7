import Foundation
import Testing

/// The example systemd units in config/systemd stay valid and hardened.
@Suite struct ServiceUnitTests {
    static let analyzer = "/usr/bin/systemd-analyze"
    static let units = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("config/systemd")

    static var unitNames: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: units.path)) ?? []).filter { $0.hasSuffix(".service") || $0.hasSuffix(".timer") }.sorted()
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: analyzer), "systemd-analyze is not installed"), arguments: unitNames)
    func systemdAcceptsTheUnit(_ name: String) throws {
        let folder = NSTemporaryDirectory() + "minitorrent-units-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // The programs where this build put them, so that systemd finds what it would start.
        let text = try String(contentsOf: Self.units.appendingPathComponent(name), encoding: .utf8)
            .replacingOccurrences(of: "/usr/local/bin/", with: Command.productsFolder.path + "/")
        try text.write(toFile: "\(folder)/\(name)", atomically: true, encoding: .utf8)
        if name.hasSuffix(".timer") {
            let service = name.replacingOccurrences(of: ".timer", with: ".service")
            let serviceText = try String(contentsOf: Self.units.appendingPathComponent(service), encoding: .utf8)
                .replacingOccurrences(of: "/usr/local/bin/", with: Command.productsFolder.path + "/")
            try serviceText.write(toFile: "\(folder)/\(service)", atomically: true, encoding: .utf8)
        }
        let result = try Command.run(Self.analyzer, ["verify", "--man=no", "\(folder)/\(name)"], in: folder)
        #expect(result.status == 0, "\(result.output)\(result.errors)")
        #expect(result.errors.isEmpty, "\(result.errors)")
    }

    @Test(arguments: ["minitorrent-tracker.service", "minitorrent-peer.service"])
    func theServersAreHardenedAndReloadOnHUP(_ name: String) throws {
        let lines = try String(contentsOf: Self.units.appendingPathComponent(name), encoding: .utf8).split(separator: "\n").map(String.init)
        for setting in ["NoNewPrivileges=yes", "ProtectSystem=strict", "ExecReload=/bin/kill -HUP $MAINPID", "StandardInput=null"] {
            #expect(lines.contains(setting), "\(name) lacks \(setting)")
        }
        #expect(lines.contains { $0.hasPrefix("ReadWritePaths=/var/lib/minitorrent/") })
    }
}
