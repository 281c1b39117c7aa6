import Foundation
import InferOpsCore
import Testing

@testable import InferOpsKube

/// Reading a rollout from rendered manifests and the live Deployment: fixtures, no cluster.
@Suite("Rollout reading")
struct RolloutReadingTests {
    /// What `helm template` prints for the chart, trimmed: a Service, then the Deployment.
    static func rendered(strategy: String = "", annotation: String = "1", gpus: String = "4", env: String = "")
        -> String
    {
        """
        ---
        # Source: vllm-engine/templates/service.yaml
        apiVersion: v1
        kind: Service
        metadata:
          name: qwen-staging
        spec:
          ports:
            - port: 8000
        ---
        # Source: vllm-engine/templates/deployment.yaml
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: qwen-staging
          labels:
            app.kubernetes.io/instance: qwen-staging
        spec:
          replicas: 2
          \(strategy)
          template:
            metadata:
              labels:
                app.kubernetes.io/instance: qwen-staging
              annotations:
                inferops.dev/config: "\(annotation)"
            spec:
              terminationGracePeriodSeconds: 30
              containers:
                - name: vllm
                  image: "vllm/vllm-openai:v0.6.3"
                  ports:
                    - containerPort: 8000
                  env:
                    - name: HF_HOME
                      value: "/cache"\(env)
                  resources:
                    limits:
                      nvidia.com/gpu: \(gpus)
                    requests:
                      nvidia.com/gpu: \(gpus)
                      cpu: "4"
        """
    }

    /// The same Deployment as the API server keeps it: defaults filled in, quantities as strings,
    /// and an annotation `kubectl rollout restart` would add.
    static let live: JSONValue = try! JSONDecoder().decode(
        JSONValue.self,
        from: Data(
            #"""
            {"apiVersion":"apps/v1","kind":"Deployment",
             "metadata":{"name":"qwen-staging","uid":"u1","generation":3,"labels":{"app.kubernetes.io/instance":"qwen-staging"}},
             "spec":{"replicas":2,"revisionHistoryLimit":10,
              "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":"25%"}},
              "template":{"metadata":{"labels":{"app.kubernetes.io/instance":"qwen-staging"},
                "annotations":{"inferops.dev/config":"1","kubectl.kubernetes.io/restartedAt":"2026-12-01T10:00:00Z"}},
               "spec":{"terminationGracePeriodSeconds":30,"restartPolicy":"Always","dnsPolicy":"ClusterFirst",
                "containers":[{"name":"vllm","image":"vllm/vllm-openai:v0.6.3","imagePullPolicy":"IfNotPresent",
                 "terminationMessagePath":"/dev/termination-log",
                 "ports":[{"containerPort":8000,"protocol":"TCP"}],
                 "env":[{"name":"HF_HOME","value":"/cache"}],
                 "resources":{"limits":{"nvidia.com/gpu":"4"},"requests":{"nvidia.com/gpu":"4","cpu":"4"}}}]}}},
             "status":{"replicas":2}}
            """#.utf8
        )
    )

    func rollout(_ rendered: String, live: JSONValue? = Self.live) throws -> Rollout {
        let deployment = try #require(RolloutReading.deployment(in: rendered, release: "qwen-staging"))
        return RolloutReading.rollout(rendered: deployment, live: live)
    }

    @Test func theSameTemplateOverAPIDefaultsIsNoChange() throws {
        let rollout = try rollout(Self.rendered())
        #expect(
            rollout
                == Rollout(
                    strategy: .kubernetesDefault,
                    running: .init(replicas: 2, gpusPerReplica: 4),
                    templateChanges: false
                )
        )
    }

    @Test(arguments: [
        ("a changed annotation", rendered(annotation: "2")),
        ("more GPUs per pod", rendered(gpus: "8")),
        ("an added env var", rendered(env: "\n            - name: EXTRA\n              value: \"1\"")),
    ])
    func aTemplateChangeIsSeen(_ what: String, _ rendered: String) throws {
        #expect(try rollout(rendered).templateChanges, "\(what)")
    }

    @Test func nothingRunningYet() throws {
        let rollout = try rollout(Self.rendered(), live: nil)
        #expect(rollout.running == nil)
        #expect(rollout.templateChanges)
    }

    @Test(arguments: [
        ("", Rollout.Strategy.kubernetesDefault),
        ("strategy:\n    type: Recreate", .recreate),
        (
            "strategy:\n    rollingUpdate:\n      maxSurge: 0\n      maxUnavailable: 1",
            .rollingUpdate(maxSurge: .count(0), maxUnavailable: .count(1))
        ),
        (
            "strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: 50%",
            .rollingUpdate(maxSurge: .percent(50), maxUnavailable: .percent(25))
        ),
        (
            "strategy:\n    rollingUpdate:\n      maxUnavailable: \"2\"",
            .rollingUpdate(maxSurge: .percent(25), maxUnavailable: .count(2))
        ),
    ])
    func strategyAsRendered(_ yaml: String, _ expected: Rollout.Strategy) throws {
        #expect(try rollout(Self.rendered(strategy: yaml)).strategy == expected)
    }

    @Test func noDeploymentRendered() {
        #expect(
            RolloutReading.deployment(in: "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n", release: "x") == nil
        )
        #expect(RolloutReading.deployment(in: ": not yaml: [", release: "x") == nil)
    }

    @Test func theCurrentReplicaSetIsTheOneWithTheDeploymentsTemplate() throws {
        func replicaSet(_ hash: String, annotation: String) throws -> JSONValue {
            try JSONDecoder().decode(
                JSONValue.self,
                from: Data(
                    #"""
                    {"metadata":{"name":"qwen-staging-\#(hash)"},"spec":{"replicas":1,"template":{
                      "metadata":{"labels":{"app.kubernetes.io/instance":"qwen-staging","pod-template-hash":"\#(hash)"},
                       "annotations":{"inferops.dev/config":"\#(annotation)"}},"spec":{"containers":[{"name":"vllm"}]}}}}
                    """#.utf8
                )
            )
        }
        let deployment = try JSONDecoder().decode(
            JSONValue.self,
            from: Data(
                #"""
                {"spec":{"template":{"metadata":{"labels":{"app.kubernetes.io/instance":"qwen-staging"},
                  "annotations":{"inferops.dev/config":"2"}},"spec":{"containers":[{"name":"vllm"}]}}}}
                """#.utf8
            )
        )
        let old = try replicaSet("aaa", annotation: "1")
        let new = try replicaSet("bbb", annotation: "2")
        #expect(RolloutReading.currentHash(deployment: deployment, replicaSets: [old, new]) == "bbb")
        #expect(RolloutReading.currentHash(deployment: deployment, replicaSets: [old]) == nil)
    }
}
