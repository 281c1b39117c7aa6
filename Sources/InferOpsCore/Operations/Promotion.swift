import Crypto
import Foundation

/// The operation a promotion carries forward: a deploy that succeeded and was verified in the
/// source environment. Its digest and verification are part of the promoted plan, so an approver
/// sees, and approves, exactly what was proven.
public struct PromotionSource: Hashable, Sendable {
    public var operation: OperationID
    public var environment: String
    /// The source operation's plan digest.
    public var digest: String
    /// The digest of the source's model values (`DeployPlan.modelValuesDigest`).
    public var valuesDigest: String
    public var verifiedAt: Date
    public var latency: Duration
    /// The Helm revision that was verified in the source.
    public var revision: Int?

    public init(operation: OperationID, environment: String, digest: String, valuesDigest: String, verifiedAt: Date,
                latency: Duration, revision: Int?) {
        self.operation = operation
        self.environment = environment
        self.digest = digest
        self.valuesDigest = valuesDigest
        self.verifiedAt = verifiedAt
        self.latency = latency
        self.revision = revision
    }

    var canonical: JSONValue {
        var object: [String: JSONValue] = [
            "operation": .string(operation.rawValue),
            "environment": .string(environment),
            "digest": .string(digest),
            "valuesDigest": .string(valuesDigest),
            "verifiedAtMs": .number((verifiedAt.timeIntervalSince1970 * 1000).rounded()),
            "latencyMs": .number(Double(latency.milliseconds)),
        ]
        if let revision { object["revision"] = .number(Double(revision)) }
        return .object(object)
    }

    /// The environment a stored promotion plan was promoted from.
    public static func environment(inPlan plan: JSONValue?) -> String? {
        plan?["promotion"]?["environment"]?.stringValue
    }

    /// The operation a stored promotion plan names as its source.
    public static func operation(inPlan plan: JSONValue?) -> OperationID? {
        plan?["promotion"]?["operation"]?.stringValue.map { OperationID($0) }
    }
}

/// Builds a promotion's plan: the source's chart, chart version and model values, the target
/// environment's release, values files, replicas and readiness budget, and the stricter of the two
/// environments' success criteria.
public enum PromotionPlanner {
    /// The keys of a plan's values that belong to the environment, not the model: a promotion sets
    /// them from the target, and the model values digest leaves them out.
    static func environmentKeysRemoved(from values: JSONValue) -> JSONValue {
        guard case .object(var object) = values else { return values }
        object["replicaCount"] = nil
        object["readiness"] = nil
        if case .object(var labels)? = object["labels"] {
            labels["environment"] = nil
            object["labels"] = .object(labels)
        }
        return .object(object)
    }

    /// The success criteria a promotion is held to: the more demanding of each.
    public static func stricter(_ source: VerificationSettings, _ target: VerificationSettings) -> VerificationSettings {
        var criteria = target
        criteria.warmupRequests = max(source.warmupRequests, target.warmupRequests)
        criteria.latencyTarget = min(source.latencyTarget, target.latencyTarget)
        return criteria
    }

    /// - Parameters:
    ///   - model: the catalog's entry, for its name; the model id, revision, image and GPUs come
    ///     from the source's plan, which is what was verified.
    ///   - source: a succeeded, verified deploy or promotion in `sourceEnvironment`, with its plan.
    /// - Throws: `Refusal` when the source's stored plan cannot be carried (an older record).
    public static func plan(
        model: ModelSpec, source: OperationRecord, verification: Verification, sourceEnvironment: EnvironmentSettings,
        target environment: EnvironmentSettings
    ) throws(Refusal) -> DeployPlan {
        guard let stored = source.plan, let digest = source.planDigest, let values = stored["values"],
              let chart = stored["chart"]?.stringValue, let modelID = stored["modelId"]?.stringValue,
              let revision = stored["revision"]?.stringValue, let gpus = stored["gpusPerReplica"]?.intValue
        else {
            throw Refusal("\(source.id) has no plan InferOps can carry to `\(environment.name)`.",
                          hint: "Deploy \(model.name) to `\(sourceEnvironment.name)` again, then promote.")
        }
        var spec = model
        spec.modelID = modelID
        spec.revision = revision
        spec.gpusPerReplica = gpus
        if let repository = values["image"]?["repository"]?.stringValue, let tag = values["image"]?["tag"]?.stringValue {
            spec.image = "\(repository):\(tag)"
        }
        let target = environment.target(model: model.name)
        let carried = values
            .setting(path: ["labels", "environment"], to: .string(environment.name))
            .setting(path: ["readiness", "budgetSeconds"], to: .number(Double(environment.readinessBudget.components.seconds)))
            .setting(path: ["replicaCount"], to: .number(Double(environment.replicas)))
        var plan = DeployPlan(
            model: spec, environment: environment.name, target: target,
            endpoint: EngineEndpoint(target: target, service: target.release), chart: chart,
            chartVersion: stored["chartVersionResolved"]?.stringValue ?? stored["chartVersion"]?.stringValue,
            valuesFiles: environment.valuesFiles, values: carried, replicas: environment.replicas,
            gpusPerReplica: gpus, readinessBudget: environment.readinessBudget)
        plan.verification = stricter(sourceEnvironment.verification, environment.verification)
        plan.promotion = PromotionSource(
            operation: source.id, environment: sourceEnvironment.name, digest: digest,
            valuesDigest: DeployPlan.modelValuesDigest(of: values), verifiedAt: verification.at,
            latency: verification.latency, revision: verification.revision)
        return plan
    }

    /// Checks the chart read for the promotion is the chart the source deployed: the same files,
    /// not only the same name and version.
    /// - Throws: `Refusal` naming both digests when it changed.
    public static func checkChart(_ plan: DeployPlan, source: OperationRecord) throws(Refusal) {
        guard let promotion = plan.promotion, let proven = source.plan?["chartDigest"]?.stringValue,
              let now = plan.contents?.chartDigest, now != proven
        else { return }
        throw Refusal(
            "The chart \(plan.chart) changed since \(promotion.operation) was verified in `\(promotion.environment)` "
                + "(chart digest \(DeployPlan.short(proven)) is now \(DeployPlan.short(now))): promoting it would not deploy what was proven.",
            hint: "Deploy \(plan.model.name) to `\(promotion.environment)` again, let it verify, then promote.")
    }
}

extension DeployPlan {
    /// The digest of the model values alone: the values without what belongs to the environment
    /// (replicas, readiness budget, the environment label). A promotion has the same one as its source.
    public static func modelValuesDigest(of values: JSONValue) -> String {
        let hash = SHA256.hash(data: Data(PromotionPlanner.environmentKeysRemoved(from: values).canonical.utf8))
        return "sha256:" + hex(hash)
    }

    public var modelValuesDigest: String { Self.modelValuesDigest(of: values) }

    /// The first 12 hex digits of a `sha256:` digest: how replies show one.
    public static func short(_ digest: String) -> String {
        String(digest.dropFirst("sha256:".count).prefix(12))
    }
}

/// What a plan's values change against the values of what runs, key by key: the lines of an
/// approval request's "values diff".
public enum ValuesDiff {
    /// One line per changed leaf, as `path: old → new`, sorted by path; `+`/`−` for added and removed.
    /// - Parameter limit: at most this many lines, then one saying how many more.
    public static func lines(from old: JSONValue, to new: JSONValue, limit: Int = 20) -> [String] {
        let before = leaves(old), after = leaves(new)
        var lines: [String] = []
        for path in Set(before.keys).union(after.keys).sorted() {
            switch (before[path], after[path]) {
            case (let was?, let now?) where was != now: lines.append("\(path): \(was.canonical) → \(now.canonical)")
            case (nil, let now?): lines.append("+ \(path): \(now.canonical)")
            case (let was?, nil): lines.append("− \(path): \(was.canonical)")
            default: break
            }
        }
        guard lines.count > limit else { return lines }
        return Array(lines.prefix(limit)) + ["… and \(lines.count - limit) more changed values"]
    }

    /// Every leaf of an object by its dotted path; arrays are leaves.
    static func leaves(_ value: JSONValue, prefix: String = "") -> [String: JSONValue] {
        guard case .object(let object) = value else { return prefix.isEmpty ? [:] : [prefix: value] }
        var result: [String: JSONValue] = [:]
        for (key, child) in object {
            result.merge(leaves(child, prefix: prefix.isEmpty ? key : prefix + "." + key)) { $1 }
        }
        if object.isEmpty, !prefix.isEmpty { result[prefix] = value }
        return result
    }
}
