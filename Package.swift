// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "MiniTorrent",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "mtca", targets: ["mtca"]),
        .executable(name: "mtorrent", targets: ["mtorrent"]),
        .executable(name: "tracker", targets: ["tracker"]),
        .executable(name: "peer", targets: ["peer"]),
    ],
    traits: [
        .trait(name: "GnuTLS", description: "Adds the GnuTLS backend (needs libgnutls28-dev), chosen at run time."),
        .default(enabledTraits: []),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev", "pkg-config"])]
        ),
        .systemLibrary(
            name: "CGnuTLS",
            pkgConfig: "gnutls",
            providers: [.apt(["libgnutls28-dev"])]
        ),
        .target(name: "FileIO"),
        .target(
            name: "Console",
            dependencies: [
                .product(name: "Logging", package: "swift-log"), .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "Telemetry",
            dependencies: [
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(
            name: "PKI",
            dependencies: [
                "FileIO",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .target(name: "Pieces", dependencies: ["COpenSSL", "FileIO", .product(name: "NIOConcurrencyHelpers", package: "swift-nio")]),
        .target(
            name: "MTorrentFormat",
            dependencies: [
                "PKI", "Pieces", "FileIO",
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
        .target(
            name: "TLS",
            dependencies: [
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                "COpenSSL", "PKI", "Telemetry",
                .target(name: "CGnuTLS", condition: .when(traits: ["GnuTLS"])),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .target(
            name: "Wire",
            dependencies: ["PKI", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "Tracker",
            dependencies: [
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                "Wire", "TLS", "PKI", "FileIO", "MTorrentFormat", "Telemetry",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "PostgresRegistry",
            dependencies: [
                "Tracker", "Wire", "PKI", "FileIO",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "Peer",
            dependencies: [
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                "Wire", "TLS", "PKI", "MTorrentFormat", "Pieces", "FileIO", "Telemetry",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "mtca",
            dependencies: ["PKI", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "tracker",
            dependencies: [
                "Tracker", "PostgresRegistry", "TLS", "PKI", "FileIO", "MTorrentFormat", "Console", "Telemetry",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "peer",
            dependencies: [
                "Peer", "TLS", "PKI", "FileIO", "MTorrentFormat", "Console", "Telemetry",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "mtorrent",
            dependencies: [
                "MTorrentFormat", "PKI", "Pieces", "FileIO", "Console",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(
            name: "FuzzTargets",
            dependencies: ["MTorrentFormat", "PKI", "Peer", "Pieces", "Tracker", "Wire", "FileIO", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(name: "CFuzzerDriver"),
        .executableTarget(name: "mtfuzz", dependencies: ["FuzzTargets", "CFuzzerDriver"], path: "Fuzz/mtfuzz"),
        .executableTarget(
            name: "TLSBenchmark",
            dependencies: [
                "TLS", "PKI", "PKITesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/TLSBenchmark"
        ),
        .executableTarget(
            name: "TrackerBenchmark",
            dependencies: [
                "Tracker", "PostgresRegistry", "PostgresTesting", "Peer", "Wire", "TLS", "PKI", "PKITesting", "MTorrentFormat",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/TrackerBenchmark"
        ),
        .target(
            name: "SwarmSimulation",
            dependencies: ["Peer", "Wire", "PKI", "PKITesting", "Pieces", "MTorrentFormat", .product(name: "NIOCore", package: "swift-nio")],
            path: "Benchmarks/SwarmSimulation"
        ),
        .executableTarget(name: "SwarmSimulator", dependencies: ["SwarmSimulation"], path: "Benchmarks/SwarmSimulator"),
        .testTarget(name: "SwarmSimulationTests", dependencies: ["SwarmSimulation", "Peer", "Pieces"]),
        .target(name: "PKITesting", dependencies: ["PKI", "FileIO"], path: "Tests/PKITesting"),
        .target(name: "PostgresTesting", path: "Tests/PostgresTesting"),
        .testTarget(
            name: "PKITests",
            dependencies: [
                "PKI", "FileIO", "PKITesting",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        .testTarget(
            name: "PiecesTests",
            dependencies: ["Pieces", "PKITesting", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(
            name: "MTorrentFormatTests",
            dependencies: ["MTorrentFormat", "PKI", "Pieces", "FileIO", "PKITesting", .product(name: "X509", package: "swift-certificates")]
        ),
        .testTarget(
            name: "TLSTests",
            dependencies: [
                "TLS", "PKI", "PKITesting",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "PeerTests",
            dependencies: ["Peer", "Wire", "PKI", "Pieces", "PKITesting", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(name: "FileIOTests", dependencies: ["FileIO"]),
        .testTarget(name: "ConsoleTests", dependencies: ["Console", .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "TelemetryTests",
            dependencies: [
                "Telemetry",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "FuzzTargetsTests", dependencies: ["FuzzTargets", "MTorrentFormat", "PKI"]),
        .testTarget(
            name: "WireTests",
            dependencies: ["Wire", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio")]
        ),
        .testTarget(
            name: "TrackerTests",
            dependencies: [
                "Tracker", "PostgresRegistry", "PostgresTesting", "Peer", "Wire", "TLS", "PKI", "PKITesting", "MTorrentFormat",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "mtca", "mtorrent", "tracker", "peer", "PKITesting", "PostgresTesting", "Peer", "Wire", "TLS", "PKI", "MTorrentFormat", "Pieces",
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
