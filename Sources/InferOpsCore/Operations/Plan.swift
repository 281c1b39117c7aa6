import Crypto
import Foundation

/// Everything a deploy will change. Its digest binds approvals and records to this exact plan.
public struct DeployPlan: Hashable, Sendable {
    public var model: ModelSpec
    public var environment: String
    public var target: ReleaseTarget
    public var endpoint: EngineEndpoint
    public var chart: String
    public var chartVersion: String?
    public var valuesFiles: [String]
    /// The values the plan sets on top of the values files: model, image, GPUs, replicas, `--set`.
    public var values: JSONValue
    public var replicas: Int
    public var gpusPerReplica: Int
    public var readinessBudget: Duration
    /// What the chart and the values files contain, once read (`OperationPlanning.readContents`).
    public var contents: PlanContents?
    /// For a promotion: the verified operation it carries forward.
    public var promotion: PromotionSource?
    /// The success criteria when they are not the environment's own (a promotion's are the
    /// stricter of the source's and the target's).
    public var verification: VerificationSettings?
    /// The fewest replicas the requester accepts when the GPUs are short (`--min-replicas`); `nil`:
    /// exactly `replicas` or nothing.
    public var minReplicas: Int?

    /// The plan in canonical JSON: what is hashed and stored. It covers the chart's and the values
    /// files' contents once they are read, so a changed file changes the digest.
    public var canonical: JSONValue {
        var object: [String: JSONValue] = [
            "model": .string(model.name),
            "modelId": .string(model.modelID),
            "revision": .string(model.revision),
            "environment": .string(environment),
            "release": .string(target.release),
            "namespace": .string(target.namespace),
            "chart": .string(chart),
            "valuesFiles": .array(valuesFiles.map(JSONValue.string)),
            "values": values,
            "replicas": .number(Double(replicas)),
            "gpusPerReplica": .number(Double(gpusPerReplica)),
            "readinessBudgetSeconds": .number(Double(readinessBudget.components.seconds)),
        ]
        if let context = target.kubeContext { object["kubeContext"] = .string(context) }
        if let minReplicas { object["minReplicas"] = .number(Double(minReplicas)) }
        if let chartVersion { object["chartVersion"] = .string(chartVersion) }
        if let contents {
            if let version = contents.chartVersion { object["chartVersionResolved"] = .string(version) }
            if let digest = contents.chartDigest { object["chartDigest"] = .string(digest) }
            object["valuesFileDigests"] = .array(contents.valuesDigests.map(JSONValue.string))
        }
        if let promotion { object["promotion"] = promotion.canonical }
        if let verification {
            object["successCriteria"] = .object([
                "warmupRequests": .number(Double(verification.warmupRequests)),
                "latencyTargetMs": .number(Double(verification.latencyTarget.milliseconds)),
            ])
        }
        return .object(object)
    }

    /// SHA-256 of the canonical form, as `sha256:` and 64 hex digits.
    public var digest: String {
        let hash = SHA256.hash(data: Data(canonical.canonical.utf8))
        return "sha256:" + hex(hash)
    }

    public var shortDigest: String { Self.short(digest) }

    public var gpusNeeded: Int { replicas * gpusPerReplica }

    public var upgrade: ReleaseUpgrade {
        ReleaseUpgrade(
            target: target, chart: chart, chartVersion: chartVersion, valuesFiles: valuesFiles, values: values,
            timeout: readinessBudget
        )
    }
}

/// Builds deploy plans from the catalog, the environment and the command's `--set` values.
public enum DeployPlanner {
    /// More replicas than this in one command is a typo, not a plan.
    public static let maximumReplicas = 64

    /// - Throws: `Refusal` for a `--set` key outside the environment's whitelist or a bad value.
    public static func plan(
        model: ModelSpec, environment: EnvironmentSettings, chartVersion: String?, overrides: [String], minReplicas: Int? = nil
    ) throws(Refusal) -> DeployPlan {
        let target = environment.target(model: model.name)
        let (repository, tag) = splitImage(model.image)
        var values: JSONValue = .object([
            "model": .object([
                "id": .string(model.modelID), "revision": .string(model.revision), "servedName": .string(model.name),
            ]),
            "image": .object(["repository": .string(repository), "tag": .string(tag)]),
            "resources": .object(["gpus": .number(Double(model.gpusPerReplica))]),
            "engine": .object(["extraArgs": .array(model.engineArguments.map(JSONValue.string))]),
            "labels": .object(["model": .string(model.name), "environment": .string(environment.name)]),
            "readiness": .object(["budgetSeconds": .number(Double(environment.readinessBudget.components.seconds))]),
            "replicaCount": .number(Double(environment.replicas)),
        ])
        values = model.values.merging(values)
        for override in overrides {
            let (path, value) = try parseOverride(override, allowed: environment.allowedSetKeys, environment: environment.name)
            values = values.setting(path: path, to: value)
        }
        // The capacity check counts these replicas, so the chart must get exactly this number.
        let replicas: Int
        switch values["replicaCount"] {
        case nil:
            replicas = environment.replicas
        case .number(let number)? where number == number.rounded() && (0...maximumReplicas).contains(Int(exactly: number) ?? -1):
            replicas = Int(number)
        default:
            throw Refusal(
                "`replicaCount` must be a whole number from 0 to \(maximumReplicas), not `\(user: CommandParser.excerpt(values["replicaCount"]!.description))`."
            )
        }
        if let minReplicas, minReplicas > replicas {
            throw Refusal(
                "`--min-replicas \(minReplicas)` is more than the \(replicas.counting("replica")) this deploy asks for.",
                hint: "Ask for more with `--set replicaCount=N`, or a lower `--min-replicas`.")
        }
        var plan = DeployPlan(
            model: model, environment: environment.name, target: target,
            endpoint: EngineEndpoint(target: target, service: target.release),
            chart: environment.chart, chartVersion: chartVersion ?? environment.chartVersion,
            valuesFiles: environment.valuesFiles, values: values, replicas: replicas,
            gpusPerReplica: model.gpusPerReplica, readinessBudget: environment.readinessBudget
        )
        plan.minReplicas = minReplicas.flatMap { $0 < replicas ? $0 : nil }
        return plan
    }

    static func parseOverride(_ text: String, allowed: [String], environment: String) throws(Refusal) -> ([String], JSONValue) {
        guard let equals = text.firstIndex(of: "=") else { throw Refusal("`--set` needs `key=value`.") }
        let key = String(text[..<equals])
        let raw = String(text[text.index(after: equals)...])
        guard allowed.contains(key) else {
            let list = allowed.isEmpty ? "none" : allowed.map { "`\($0)`" }.joined(separator: ", ")
            throw Refusal(
                "`--set \(CommandParser.excerpt(key))` is not allowed in `\(environment)`."
                    + Suggestions.didYouMean(key, in: allowed),
                hint: "Keys this environment allows: \(list)."
            )
        }
        guard raw.count <= 256, raw.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0 != "`" && $0 != "$" }) else {
            throw Refusal("The value of `\(key)` contains characters that are not allowed (`, $ or control characters).")
        }
        let value: JSONValue
        if let number = Int(raw) {
            value = .number(Double(number))
        } else if raw == "true" || raw == "false" {
            value = .bool(raw == "true")
        } else {
            value = .string(raw)
        }
        return (valuePath(key), value)
    }

    /// Splits a dotted key on unescaped dots, as `helm --set` does: `a.b\.c` is `["a", "b.c"]`.
    public static func valuePath(_ key: String) -> [String] {
        var parts: [String] = []
        var current = ""
        var escaped = false
        for character in key {
            if escaped {
                current.append(character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == "." {
                parts.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        parts.append(current)
        return parts
    }

    static func splitImage(_ image: String) -> (String, String) {
        if let colon = image.lastIndex(of: ":"), !image[colon...].contains("/") {
            return (String(image[..<colon]), String(image[image.index(after: colon)...]))
        }
        return (image, "latest")
    }
}

/// Lowercase hex of `bytes` (a digest), without a formatted string per byte: the plan's digest and
/// every audit row's link are written this way.
public func hex<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var text: [UInt8] = []
    text.reserveCapacity(64)
    for byte in bytes {
        text.append(digits[Int(byte >> 4)])
        text.append(digits[Int(byte & 0x0f)])
    }
    return String(decoding: text, as: UTF8.self)
}
