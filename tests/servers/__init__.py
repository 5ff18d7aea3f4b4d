"""The real parts tests and benches run against, each started on loopback: a Kafka-protocol
broker (kafkabroker), Prometheus (promserver), the Kubernetes API emulator (kubeapi, with the
CRD validator crd), an HTTP receiver (receiver, on threaded), the daemon as a child process
(daemon), and all of them around it (world)."""
