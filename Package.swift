// swift-tools-version: 6.0
import PackageDescription

let strict: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "InferOps",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "inferops", targets: ["inferops"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", exact: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift", exact: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", exact: "5.0.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
    ],
    targets: [
        // The domain: commands, policy, plans, operations, replies and the ports. No I/O.
        .target(
            name: "InferOpsCore",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .target(name: "InferOpsHTTP", dependencies: ["CCurl"], swiftSettings: strict),
        // WebSockets (Slack Socket Mode): libwebsockets, with its single-thread rules kept in a small C bridge.
        .systemLibrary(
            name: "CLibWebsockets",
            pkgConfig: "libwebsockets",
            providers: [.apt(["libwebsockets-dev"])]
        ),
        .target(name: "CWSBridge", dependencies: ["CLibWebsockets"]),
        .target(
            name: "InferOpsWebSocket",
            dependencies: ["CWSBridge", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .target(name: "InferOpsKube", dependencies: ["InferOpsCore", "InferOpsHTTP", "Yams"], swiftSettings: strict),
        // zlib: Helm's stored release records are gzip-compressed.
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // Helm reads its release records from the Kubernetes API (`HelmStorage`), so it sits on InferOpsKube.
        .target(
            name: "InferOpsHelm",
            dependencies: ["InferOpsCore", "InferOpsKube", "CZlib", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict),
        .target(name: "InferOpsRouter", dependencies: ["InferOpsCore", "InferOpsHTTP"], swiftSettings: strict),
        .target(
            name: "InferOpsServer",
            dependencies: [
                "InferOpsCore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "InferOpsStore",
            dependencies: [
                "InferOpsCore", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        // libedit: the interactive console's line editing and history.
        .systemLibrary(
            name: "CEditLine",
            pkgConfig: "libedit",
            providers: [.apt(["libedit-dev"])]
        ),
        .target(name: "InferOpsConsole", dependencies: ["InferOpsCore", "CEditLine"], swiftSettings: strict),
        // Slack: Socket Mode over the WebSocket client, the Web API over libcurl, Block Kit rendering.
        .target(
            name: "InferOpsSlack",
            dependencies: ["InferOpsCore", "InferOpsHTTP", "InferOpsWebSocket", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .target(
            name: "InferOpsApp",
            dependencies: [
                "InferOpsCore", "InferOpsHTTP", "InferOpsKube", "InferOpsHelm", "InferOpsStore", "InferOpsConsole",
                "InferOpsRouter", "InferOpsServer", "InferOpsSlack", "InferOpsWebSocket",
                "Yams", .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "inferops",
            dependencies: [
                "InferOpsApp", "InferOpsCore", "InferOpsSlack", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(name: "InferOpsTesting", dependencies: ["InferOpsCore"], swiftSettings: strict),
        // Launchers for the Kubernetes API emulator, the real vllm-router and the daemon, shared by
        // the test targets. Foundation only, so any test target can use it.
        .target(name: "InferOpsTestSupport", path: "Tests/TestSupport", swiftSettings: strict),
        // The console renderer too: help is checked as a terminal shows it.
        .testTarget(name: "InferOpsCoreTests", dependencies: ["InferOpsCore", "InferOpsTesting", "InferOpsConsole"]),
        // The store contract runs against the in-memory fake too.
        .testTarget(name: "InferOpsStoreTests", dependencies: ["InferOpsStore", "InferOpsCore", "InferOpsTesting"]),
        .testTarget(name: "InferOpsConsoleTests", dependencies: ["InferOpsConsole", "InferOpsCore", "InferOpsTestSupport"]),
        .testTarget(
            name: "InferOpsSlackTests",
            dependencies: [
                "InferOpsSlack", "InferOpsCore", "InferOpsHTTP", "InferOpsWebSocket", "InferOpsTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "InferOpsWebSocketTests",
            dependencies: ["InferOpsWebSocket", "InferOpsTestSupport"]
        ),
        .testTarget(
            name: "InferOpsHelmTests",
            dependencies: ["InferOpsHelm", "InferOpsCore", "InferOpsKube", "InferOpsHTTP", "InferOpsTestSupport"]
        ),
        .testTarget(
            name: "InferOpsKubeTests",
            dependencies: ["InferOpsKube", "InferOpsHTTP", "InferOpsCore", "InferOpsTestSupport"]
        ),
        .testTarget(
            name: "InferOpsRouterTests",
            dependencies: ["InferOpsRouter", "InferOpsHTTP", "InferOpsCore", "InferOpsTestSupport"]
        ),
        .testTarget(
            name: "InferOpsServerTests",
            dependencies: [
                "InferOpsServer", "InferOpsCore", .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(name: "InferOpsTestSupportTests", dependencies: ["InferOpsTestSupport"], path: "Tests/TestSupportTests"),
        .testTarget(
            name: "InferOpsEndToEndTests",
            dependencies: ["InferOpsApp", "InferOpsCore", "InferOpsTesting", "InferOpsTestSupport"]
        ),
    ]
)
