#!/bin/sh
# Runs every benchmark, keeps their JSON in docs/benchmarks.json and writes
# the tables of docs/benchmarks.md.  Usage: bench/run.sh BENCH_DIR DOCS_DIR
set -eu
bin=$1
docs=$2
json=$docs/benchmarks.json
md=$docs/benchmarks.md

{
    echo "["
    sep=""
    for b in bench_copy bench_latency bench_overlap bench_iotlb bench_iova bench_dma_map bench_dma_e2e bench_vfio_map bench_vfio_copy; do
        echo "running $b" >&2
        printf '%s' "$sep"
        "$bin/$b"
        sep=","
    done
    echo "]"
} > "$json.tmp"
mv "$json.tmp" "$json"

{
    echo "# Benchmarks"
    echo
    echo "Written by \`make bench\` on $(date -u +%Y-%m-%d) ($(nproc) CPUs, $(uname -m)); the raw"
    echo "JSON is in [benchmarks.json](benchmarks.json).  Every figure is compared with a"
    echo "baseline measured in the same run, because this machine is shared and noisy."
    echo
    echo "## DMA engine copy throughput vs memcpy"
    echo
    echo "Each round queues a batch of descriptors per channel (up to 16 MiB in flight),"
    echo "ringing the doorbell every 8, and polls the last completion record; memcpy"
    echo "copies the same bytes between the same buffers on one CPU.  Target: ratio"
    echo ">= 0.9 from 64 KiB on one channel.  \`no-iommu\`: DMA straight to RAM;"
    echo "\`vtd-off\`: the same behind the VT-d unit, present but not enabled."
    echo
    echo "| machine | channels | transfer | batch | engine GB/s | memcpy GB/s | ratio |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    jq -r '.[] | select(.bench == "dma_copy") | .results[] |
        "| \(.machine) | \(.channels) | \(if .size >= 1048576 then "\(.size / 1048576) MiB" else "\(.size / 1024) KiB" end) | \(.batch) | \(.engine_gbps) | \(.memcpy_gbps) | \(.ratio) |"' "$json"
    echo
    echo "## Doorbell-to-handler latency (64-byte copy)"
    echo
    echo "From just before the doorbell write to the interrupt handler.  Warm: back to"
    echo "back; cold: the channel thread asleep.  Target: warm median < 2 us."
    echo
    echo "| case | samples | median (ns) | p99 (ns) |"
    echo "|---|---:|---:|---:|"
    jq -r '.[] | select(.bench == "doorbell_latency") |
        "| warm | \(.warm.samples) | \(.warm.median) | \(.warm.p99) |",
        "| cold | \(.cold.samples) | \(.cold.median) | \(.cold.p99) |"' "$json"
    echo
    echo "## Overlap: a CPU loop during a 64 MiB copy"
    echo
    echo "| copy (ms) | loop rate alone | loop rate during copy | ratio (target >= 0.9) |"
    echo "|---:|---:|---:|---:|"
    jq -r '.[] | select(.bench == "overlap") |
        "| \(.copy_ms) | \(.loop_rate_alone) | \(.loop_rate_during_copy) | \(.ratio) |"' "$json"
    echo
    echo "## VT-d: IOTLB-hit translation"
    echo
    echo "\`vtio_vtd_translate\` on pages that hit the IOTLB (legacy mode, second level,"
    echo "4 KiB pages), and the bare IOTLB probe.  Targets: >= 100 M/s on one thread,"
    echo ">= 1.8x with two."
    echo
    echo "| what | 1 thread (M/s) | 2 threads (M/s) | speedup |"
    echo "|---|---:|---:|---:|"
    jq -r '.[] | select(.bench == "iotlb") |
        ["translate, one page", .translate], ["translate, 64 pages", .translate_64pages],
        ["IOTLB probe alone", .raw_lookup] |
        "| \(.[0]) | \(.[1].threads_1 / 1e6 | floor) | \(.[1].threads_2 / 1e6 | floor) | \(.[1].speedup_2) |"' "$json"
    echo
    echo "## IOVA allocator: alloc + free pairs"
    echo
    echo "From the per-thread cache (1 page) and from the tree (4096 live ranges), with"
    echo "malloc+free of 64 bytes as the same-run yardstick.  Targets: cache <= 30 ns,"
    echo "tree <= 300 ns, cache >= 1.8x with two threads."
    echo
    echo "| cache (ns) | tree (ns) | malloc (ns) | cache, 2 threads speedup |"
    echo "|---:|---:|---:|---:|"
    jq -r '.[] | select(.bench == "iova") |
        "| \(.cache_pair_ns) | \(.tree_pair_ns) | \(.malloc_pair_ns) | \(.cache_2thread_speedup) |"' "$json"
    echo
    echo "## DMA API: the cost of one mapping"
    echo
    echo "map_page + unmap_page of one 4 KiB page, and map_sg + unmap_sg of 64 scattered"
    echo "pages, for the DMA engine's device in each kind of domain; ratio to the"
    echo "machine without an IOMMU (dma-direct) in the same run.  Targets: 4 KiB pair"
    echo "<= 300 ns strict, <= 150 ns lazy."
    echo
    echo "| domain | map+unmap 4 KiB (ns) | ratio | map_sg 64 pages (ns) | ratio | DMA segments |"
    echo "|---|---:|---:|---:|---:|---:|"
    jq -r '.[] | select(.bench == "dma_map") | .results[] |
        "| \(.mode) | \(.map_unmap_4k_ns) | \(.ratio_4k) | \(.map_sg_64_ns) | \(.ratio_sg) | \(.sg_segments) |"' "$json"
    echo
    echo "## End to end: the cost of protection"
    echo
    echo "One transfer = map the source TO_DEVICE and the destination FROM_DEVICE, copy"
    echo "with the DMA engine, wait, unmap both.  Microseconds per transfer (best of"
    echo "three rounds) and the ratio of the no-IOMMU time to this one (1.00 = free)."
    echo
    echo "| domain | 4 KiB | 16 KiB | 64 KiB | 256 KiB | 1 MiB |"
    echo "|---|---:|---:|---:|---:|---:|"
    jq -r '.[] | select(.bench == "dma_e2e") | .results[] |
        "| \(.mode) | " + ([.sizes[] | "\(.us) us (\(.ratio))"] | join(" | ")) + " |"' "$json"
    echo
    echo "Throughput relative to no IOMMU, per transfer size (each # is 5%):"
    echo
    echo '```'
    jq -r '.[] | select(.bench == "dma_e2e") | .results[] | . as $m | .sizes[] |
        "\($m.mode)\t\(.size)\t\(.ratio)"' "$json" |
    awk -F'\t' '{ n = int($3 * 20 + 0.5); if (n > 40) n = 40; bar = "";
                  for (i = 0; i < n; i++) bar = bar "#";
                  size = $2 >= 1048576 ? ($2 / 1048576) " MiB" : ($2 / 1024) " KiB";
                  printf "%-8s %8s |%-40s %.2f\n", $1, size, bar, $3 }'
    echo '```'
    echo
    echo "The stale window of lazy invalidation: after unmapping a page the device had"
    echo "used, the engine copies from its IOVA until a copy faults."
    echo
    echo "| domain | window (ms) | copies that got through |"
    echo "|---|---:|---:|"
    jq -r '.[] | select(.bench == "dma_e2e") | .results[] | select(.stale_window_ms != null) |
        "| \(.mode) | \(.stale_window_ms) | \(.stale_copies) |"' "$json"
    echo
    echo "## VFIO: MAP_DMA and UNMAP_DMA of 1 GiB"
    echo
    echo "One MAP_DMA of 1 GiB of a process's populated memory (pin every page, charge"
    echo "locked memory, build the IOMMU tables) and one UNMAP_DMA (tables, IOTLB,"
    echo "unpin), median of $(jq -r '.[] | select(.bench == "vfio_map") | .rounds' "$json")"
    echo "rounds.  Targets: map <= 18 ms, unmap <= 3 ms (ratio target / measured, >= 1"
    echo "meets it).  Linux: Li Zhe's 2025 figures for 16 GiB (before -> after the pin"
    echo "batching of 6.15/6.16), hugetlbfs for 2 MiB pages; ratio is vtio / the newer."
    echo
    echo "| pages | map (ms) | GB/s | vs target | Linux GB/s | vs Linux | unmap (ms) | GB/s | vs target | Linux GB/s | vs Linux |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    jq -r '.[] | select(.bench == "vfio_map") | .results[] |
        "| \(.pages) | \(.map_ms) | \(.map_gbps) | \(.map_vs_target) | \(.linux_map_gbps[0])-\(.linux_map_gbps[1]) | \(.map_vs_linux) | \(.unmap_ms) | \(.unmap_gbps) | \(.unmap_vs_target) | \(.linux_unmap_gbps[0])-\(.linux_unmap_gbps[1]) | \(.unmap_vs_linux) |"' "$json"
    echo
    jq -r '.[] | select(.bench == "vfio_map") |
        "Same run, same memory: memset \(.memset_gbps) GB/s, memcpy \(.memcpy_gbps) GB/s."' "$json"
    echo
    echo "## VFIO: the userspace driver against the in-host driver"
    echo
    echo "Two engines, IOMMU on: the in-host driver with buffers mapped once through the"
    echo "DMA API (DMA-FQ domain), the poll-mode userspace driver (examples/vfio_dmae.h)"
    echo "with 2 MiB-page buffers mapped once with MAP_DMA.  Each round queues a batch"
    echo "(up to 16 MiB), doorbell every 8, polls to the end; best of the rounds each."
    echo "Target: ratio >= 0.95."
    echo
    echo "| transfer | batch | in-host GB/s | userspace GB/s | ratio |"
    echo "|---:|---:|---:|---:|---:|"
    jq -r '.[] | select(.bench == "vfio_copy") | .results[] |
        "| \(if .size >= 1048576 then "\(.size / 1048576) MiB" else "\(.size / 1024) KiB" end) | \(.batch) | \(.host_gbps) | \(.vfio_gbps) | \(.ratio) |"' "$json"
} > "$md"
echo "wrote $md and $json" >&2
