import InferOpsCore

/// One of each fake, sharing one `ManualTime`, and the `Services` the intake and the runner run on.
public struct FakeServices: Sendable {
    public let time: ManualTime
    public let store: InMemoryOperationStore
    public let releases: FakeReleaseEngine
    public let cluster: FakeCluster
    public let engines: FakeEngineClient
    public let chat: RecordingChat
    /// The router of every environment that has router settings.
    public let router: FakeRouter
    /// What the plans' charts and values files contain.
    public let planContents: FakePlanContents
    /// With `separateRouters`, each router URL's own fake router (and `router` is not used).
    public let routers: FakeRouterDirectory?
    public let warmPools: FakeWarmPools
    /// Routers found some other way (a `ReplicatedRouter` over fakes), in place of `router`/`routers`.
    public var directory: (any RouterDirectory)?

    public init(time: ManualTime = ManualTime(), separateRouters: Bool = false) {
        self.time = time
        store = InMemoryOperationStore()
        releases = FakeReleaseEngine(time: time)
        cluster = FakeCluster()
        engines = FakeEngineClient(time: time)
        chat = RecordingChat()
        router = FakeRouter()
        planContents = FakePlanContents()
        routers = separateRouters ? FakeRouterDirectory() : nil
        warmPools = FakeWarmPools()
    }

    public var services: Services {
        var services = Services(
            store: store, releases: releases, cluster: cluster, engines: engines, chat: chat, routers: directory ?? routers ?? router,
            time: time, planContents: planContents)
        services.warmPools = warmPools
        return services
    }
}
