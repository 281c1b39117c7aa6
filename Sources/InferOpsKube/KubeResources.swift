import Foundation

// The few fields of Kubernetes objects the adapter reads. Everything is optional except names,
// because the API omits empty fields and a missing field must never fail a whole list.

struct ObjectMeta: Decodable, Sendable {
    var name: String
    var namespace: String?
    var labels: [String: String]?
    var deletionTimestamp: String?
    var creationTimestamp: String?
}

/// A resource quantity: the API writes `"4"`, but hand-written manifests may say `4` or `4.0`.
struct Quantity: Decodable, Sendable, Hashable {
    var text: String

    init(_ text: String) { self.text = text }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let string = try? container.decode(String.self) {
            text = string
        } else if let int = try? container.decode(Int.self) {
            text = String(int)
        } else {
            text = String(try container.decode(Double.self))
        }
    }

    /// The amount as a whole number of units, rounded up; 0 when unreadable. Understands the
    /// Kubernetes suffixes (`m`, `k`, `M`, `G`, `Ki`, `Mi`, `Gi`…) and exponents (`1e3`).
    var units: Int {
        let suffixes: [(String, Double)] = [
            ("Ki", 1024), ("Mi", 1_048_576), ("Gi", 1_073_741_824), ("Ti", 1_099_511_627_776),
            ("n", 1e-9), ("u", 1e-6), ("m", 1e-3), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12),
        ]
        var number = text.trimmingCharacters(in: .whitespaces)
        var scale = 1.0
        for (suffix, factor) in suffixes where number.hasSuffix(suffix) {
            number.removeLast(suffix.count)
            scale = factor
            break
        }
        guard let value = Double(number), value.isFinite, value > 0 else { return 0 }
        let scaled = (value * scale * 1000).rounded() / 1000
        return Int(scaled.rounded(.up))
    }
}

struct ResourceRequirements: Decodable, Sendable {
    var requests: [String: Quantity]?
    var limits: [String: Quantity]?
}

struct KubeContainer: Decodable, Sendable {
    var name: String
    var resources: ResourceRequirements?
    /// `Always` on an init container makes it a sidecar that keeps running beside the app.
    var restartPolicy: String?
}

struct PodSpec: Decodable, Sendable {
    var nodeName: String?
    var containers: [KubeContainer]?
    var initContainers: [KubeContainer]?
    var overhead: [String: Quantity]?
}

struct PodCondition: Decodable, Sendable {
    var type: String
    var status: String
    var reason: String?
    var message: String?
    var lastTransitionTime: String?
}

struct ContainerStateDetail: Decodable, Sendable {
    var reason: String?
    var message: String?
    var exitCode: Int?
}

struct ContainerState: Decodable, Sendable {
    struct Running: Decodable, Sendable {
        var startedAt: String?
    }
    var waiting: ContainerStateDetail?
    var running: Running?
    var terminated: ContainerStateDetail?
}

struct ContainerStatus: Decodable, Sendable {
    var name: String
    var ready: Bool?
    var restartCount: Int?
    var state: ContainerState?
    var lastState: ContainerState?
}

struct PodStatus: Decodable, Sendable {
    var phase: String?
    var podIP: String?
    var reason: String?
    var message: String?
    var conditions: [PodCondition]?
    var containerStatuses: [ContainerStatus]?
    var initContainerStatuses: [ContainerStatus]?
}

struct KubePod: Decodable, Sendable {
    var metadata: ObjectMeta
    var spec: PodSpec?
    var status: PodStatus?
}

struct NodeSpec: Decodable, Sendable {
    var unschedulable: Bool?
}

struct NodeStatus: Decodable, Sendable {
    var allocatable: [String: Quantity]?
    var conditions: [PodCondition]?
}

struct KubeNode: Decodable, Sendable {
    var metadata: ObjectMeta
    var spec: NodeSpec?
    var status: NodeStatus?
}

struct KubeEvent: Decodable, Sendable {
    struct InvolvedObject: Decodable, Sendable {
        var kind: String?
        var name: String?
    }
    struct Source: Decodable, Sendable {
        var component: String?
    }
    var metadata: ObjectMeta
    var involvedObject: InvolvedObject?
    var type: String?
    var reason: String?
    var message: String?
    var count: Int?
    var firstTimestamp: String?
    var lastTimestamp: String?
    var eventTime: String?
    var source: Source?
}
