// Package metrics gives guest memory metrics without an agent in the guest
// and stores them where Azure tooling already reads them.
//
// The source is the virtio-balloon device's statistics, read over QMP
// (BalloonSampler: qom-set guest-stats-polling-interval, qom-get
// guest-stats); the guest needs only its stock virtio_balloon driver. For
// guests without the driver, HostView reads the QEMU process's resident set
// or its cgroup's memory, labelled as the host's view.
//
// Samples are aggregated exactly the way the Linux Diagnostic Extension
// (LAD, Azure/azure-linux-extensions Diagnostic/mdsd) stores them: windows
// aligned to the transfer interval with count, minimum, maximum, last, total
// and average (Aggregate, Window, VMAggregator); one LAD entity per
// aggregate and its ticks-first twin (Entities), in the table named by the
// 10-day rule (TableName). TableSink uploads each VM's window as one batch
// transaction to Azure Table storage, with an on-disk Queue that keeps
// windows across failures and restarts. Exporter is a Prometheus collector
// for per-VM memory, verdict and tick gauges and per-scenario probe results.
//
// Config is the Nanos/Ops "azure" tuple, as the monitor's JSON embeds it.
// docs/metrics.md describes every rule with its source.
package metrics
