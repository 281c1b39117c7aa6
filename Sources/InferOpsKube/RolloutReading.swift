import Foundation
import InferOpsCore
import Yams

/// Reads how a Deployment update will roll out, from the rendered manifests and the live objects:
/// pure, so fixtures can test it.
enum RolloutReading {
    static let hashLabel = "pod-template-hash"

    /// The release's Deployment among rendered manifests: the one named after the release or labeled
    /// with it, else the only Deployment. `nil` when there is none or the text is not YAML.
    static func deployment(in rendered: String, release: String) -> JSONValue? {
        guard let documents = try? Yams.load_all(yaml: rendered) else { return nil }
        var deployments: [JSONValue] = []
        for document in documents {
            let value = json(document)
            if value["kind"]?.stringValue == "Deployment" { deployments.append(value) }
        }
        let named = deployments.first {
            $0["metadata"]?["name"]?.stringValue == release
                || $0["metadata"]?["labels"]?[GPUAccounting.releaseLabel]?.stringValue == release
        }
        return named ?? (deployments.count == 1 ? deployments[0] : nil)
    }

    /// The rollout that applying `rendered` over `live` (`nil`: no Deployment yet) starts.
    static func rollout(rendered: JSONValue, live: JSONValue?) -> Rollout {
        Rollout(
            strategy: strategy(rendered["spec"]?["strategy"]),
            running: live.map {
                Rollout.Running(
                    replicas: $0["spec"]?["replicas"]?.intValue ?? 1,
                    gpusPerReplica: gpus(ofTemplate: $0["spec"]?["template"])
                )
            },
            templateChanges: live.map { !matches(rendered["spec"]?["template"], in: $0["spec"]?["template"]) } ?? true
        )
    }

    /// `spec.strategy` with Kubernetes' defaults: RollingUpdate, 25% surge, 25% unavailable.
    static func strategy(_ value: JSONValue?) -> Rollout.Strategy {
        if value?["type"]?.stringValue == "Recreate" { return .recreate }
        let rolling = value?["rollingUpdate"]
        return .rollingUpdate(
            maxSurge: rolling?["maxSurge"].flatMap(IntOrPercent.init) ?? .percent(25),
            maxUnavailable: rolling?["maxUnavailable"].flatMap(IntOrPercent.init) ?? .percent(25)
        )
    }

    static func gpus(ofTemplate template: JSONValue?) -> Int {
        guard let spec = template?["spec"], let data = try? JSONEncoder().encode(spec),
            let podSpec = try? JSONDecoder().decode(PodSpec.self, from: data)
        else { return 0 }
        return GPUAccounting.request(of: podSpec)
    }

    /// Whether applying `wanted` (as rendered) leaves `actual` (as the API server keeps it) as it is:
    /// every field rendered has the same value live. Fields only the live object has are defaults or
    /// someone else's (e.g. `kubectl rollout restart`), which an apply keeps; lists must match item
    /// by item; an empty or null value matches an absent one; scalars compare as text, so `1` and
    /// `"1"` (a quantity) are equal.
    static func matches(_ wanted: JSONValue?, in actual: JSONValue?) -> Bool {
        switch wanted {
        case nil, .null?:
            return true
        case .object(let fields)?:
            let live: [String: JSONValue]
            switch actual {
            case .object(let object)?: live = object
            case nil, .null?: live = [:]
            default: return false
            }
            return fields.allSatisfy { matches($0.value, in: live[$0.key]) }
        case .array(let items)?:
            let live: [JSONValue]
            switch actual {
            case .array(let array)?: live = array
            case nil, .null?: live = []
            default: return false
            }
            return items.count == live.count && zip(items, live).allSatisfy { matches($0, in: $1) }
        case let scalar?:
            guard let actual else { return false }
            return text(scalar) == text(actual)
        }
    }

    static func text(_ value: JSONValue) -> String? {
        switch value {
        case .string(let string): string
        case .bool(let bool): bool ? "true" : "false"
        case .number(let number):
            number.rounded() == number && abs(number) < 1e15 ? String(Int(number)) : String(number)
        case .null, .array, .object: nil
        }
    }

    /// The ReplicaSet whose template is the Deployment's (ignoring the hash label the controller adds):
    /// the revision being rolled out. Its `pod-template-hash` marks its pods.
    static func currentHash(deployment: JSONValue, replicaSets: [JSONValue]) -> String? {
        let template = deployment["spec"]?["template"]
        for replicaSet in replicaSets {
            let labels = replicaSet["spec"]?["template"]?["metadata"]?["labels"]
            guard let hash = labels?[hashLabel]?.stringValue else { continue }
            if withoutHash(replicaSet["spec"]?["template"]) == withoutHash(template) { return hash }
        }
        return nil
    }

    static func withoutHash(_ template: JSONValue?) -> JSONValue? {
        guard case .object(var object)? = template, case .object(var metadata)? = object["metadata"],
            case .object(var labels)? = metadata["labels"]
        else { return template }
        labels[hashLabel] = nil
        metadata["labels"] = .object(labels)
        object["metadata"] = .object(metadata)
        return .object(object)
    }

    /// YAML as Yams loads it (`Int`, `Double`, `Bool`, `String`, sequences, mappings) as JSON.
    static func json(_ value: Any?) -> JSONValue {
        switch value {
        case nil, is NSNull: return .null
        case let bool as Bool: return .bool(bool)
        case let int as Int: return .number(Double(int))
        case let double as Double: return .number(double)
        case let string as String: return .string(string)
        case let array as [Any]: return .array(array.map(json))
        case let map as [AnyHashable: Any]:
            var object: [String: JSONValue] = [:]
            for (key, item) in map { object["\(key.base)"] = json(item) }
            return .object(object)
        case let map as [String: Any]: return .object(map.mapValues(json))
        case let other?: return .string("\(other)")
        }
    }
}
