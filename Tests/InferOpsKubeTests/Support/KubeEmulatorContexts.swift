import InferOpsHTTP
import InferOpsKube
import InferOpsTestSupport

extension KubeEmulator {
    /// The emulator's kubeconfig, as the daemon would load it.
    func contexts(http: any HTTPClient) throws -> KubeContexts {
        KubeContexts(source: .kubeconfig(try Kubeconfig.load(path: kubeconfig)), http: http)
    }
}
