import ArgumentParser
import Console
import FileIO
import Foundation
import MTorrentFormat
import PKI
import Pieces

@main
struct MTorrentTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mtorrent",
        abstract: "Create and check signed .mtorrent files.",
        version: Release.version,
        subcommands: [Create.self, Verify.self]
    )
}

extension MTorrentTool {
    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Hash a file on all cores and write a .mtorrent signed with a peer certificate.")

        @Argument(help: "The file to describe.") var file: String
        @Option(help: ArgumentHelp("The PKI folder holding ca.crt, crl.pem and issued/NAME.*.", valueName: "dir")) var pki = "./pki"
        @Option(help: "The peer certificate to sign with (issued/NAME.crt and .key).") var name: String
        @Option(name: .customLong("tracker"), help: "A tracker address host:port (repeatable, at least one).") var trackers: [String] = []
        @Option(help: "Piece size in bytes, a power of two from 16 KiB to 64 MiB (default: chosen from the file size).") var pieceSize: Int?
        @Option(name: .shortAndLong, help: "Where to write the .mtorrent (default: the file's name + .mtorrent, here).") var output: String?

        func validate() throws {
            guard !trackers.isEmpty else { throw ValidationError("Name at least one tracker with --tracker host:port.") }
            for tracker in trackers where TrackerAddress(tracker) == nil {
                throw ValidationError("'\(tracker)' is not a tracker address; write host:port, e.g. 127.0.0.1:7000.")
            }
        }

        func run() throws {
            let layout = PKILayout(folder: pki)
            let trust = try TrustStore.load(from: layout)
            let identity = try SigningIdentity.load(named: name, from: layout)
            let destination = output ?? "\(file.split(separator: "/").last ?? "file").mtorrent"
            guard !FileManager.default.fileExists(atPath: destination) else {
                throw ValidationError("\(destination) already exists; remove it or choose another with --output.")
            }
            let total = (try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? UInt64 ?? 0
            let progress = ProgressLine.make(label: "hashing \(file)")
            let started = Date()
            var report: (@Sendable (UInt64) -> Void)?
            if let progress { report = { progress.update(done: $0, total: total) } }
            let torrent = try MTorrent.create(
                fileAt: file, trackers: trackers.compactMap { TrackerAddress($0) }, identity: identity, trust: trust,
                pieceSize: pieceSize, progress: report
            )
            progress?.finish()
            let seconds = Date().timeIntervalSince(started)
            try FileIO.createExclusive(destination, bytes: torrent.serialized(), mode: 0o644)
            let rate = seconds > 0 ? Double(torrent.layout.fileSize) / seconds / 1e6 : 0
            print("""
                Wrote \(destination), signed by peer '\(name)'.
                  file   \(torrent.name), \(torrent.layout.fileSize) bytes in \(torrent.layout.pieceCount) pieces of \(torrent.layout.pieceSize)
                  root   \(torrent.rootHex)
                  hashed in \(String(format: "%.2f", seconds)) s (\(String(format: "%.0f", rate)) MB/s)
                """)
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check a .mtorrent: strict format, signature, and signer certificate against our CA and CRL.")

        @Argument(help: "The .mtorrent file.") var file: String
        @Option(help: ArgumentHelp("The PKI folder holding ca.crt and crl.pem.", valueName: "dir")) var pki = "./pki"

        func run() throws {
            let trust = try TrustStore.load(from: PKILayout(folder: pki))
            let (torrent, signer) = try MTorrent.load(from: file, trust: trust)
            print("""
                \(file): valid, signed by \(signer)
                  file     \(torrent.name), \(torrent.layout.fileSize) bytes in \(torrent.layout.pieceCount) pieces of \(torrent.layout.pieceSize)
                  root     \(torrent.rootHex)
                  trackers \(torrent.trackers.map(\.description).joined(separator: " "))
                """)
        }
    }
}
