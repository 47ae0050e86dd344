using System.Diagnostics;
using Tp7.Engine.Data;
using Tp7.Engine.Devices;
using Tp7.Engine.Profiling;
using Tp7.Engine.Imaging;
using Tp7.Engine.Kernels;
using Tp7.Engine.Model;

namespace Tp7.Engine.Features;

/// <summary>Rows of features (N, D) with their provenance. Rows are L2-normalised unless <see cref="L2"/> is false.</summary>
public sealed record FeatureSet(
    float[] X, int N, int D, string[] Paths, int[] Labels, IReadOnlyList<string> Classes, string Layer, bool L2,
    string WeightsSha256, IReadOnlyList<SkippedFile> Skipped, ExtractionStats Stats)
{
    public ReadOnlySpan<float> Row(int i) => X.AsSpan(i * D, D);
}

/// <param name="Cached">Images whose features came from the cache.</param>
/// <param name="DecodePerCore">Images one core decodes and preprocesses per second.</param>
/// <param name="ComputeImagesPerSecond">Images per second of network time alone.</param>
public sealed record ExtractionStats(int Images, int Cached, int Computed, double Seconds, double ComputeSeconds,
    double DecodePerCore, int DecodeWorkers, double ComputeImagesPerSecond);

/// <summary>Progress of an extraction: images done of total, elapsed seconds.</summary>
public readonly record struct ExtractProgress(int Done, int Total, double Seconds);

/// <summary>
/// Deep features at one or more named layers for a list of images, all layers from one pass over the images:
/// decoding on all cores runs ahead of the network (bounded queue), an image whose every requested layer is in the
/// cache is neither decoded nor computed, and every new feature is cached under its own layer as soon as its batch is
/// done (so an interrupted run resumes, and a later run of any one of those layers reads them).
/// </summary>
public sealed class FeatureExtractor
{
    readonly ImageModel model;
    readonly string weightsSha256;
    readonly bool l2;
    readonly int batchSize;
    readonly FeatureCache? cache;
    readonly Preprocessing p;
    readonly string[] taps;

    /// <param name="layer">A tap alias or value name of the model; null: the model's default feature layer.</param>
    public FeatureExtractor(ImageModel model, string weightsSha256, string? layer, bool l2 = true, int batchSize = 32,
        FeatureCache? cache = null, Preprocessing? preprocessing = null)
        : this(model, weightsSha256, [layer ?? model.DefaultLayer], l2, batchSize, cache, preprocessing)
    {
    }

    /// <param name="layers">Tap aliases or value names of the model (at least one); a layer named twice is extracted once.</param>
    public FeatureExtractor(ImageModel model, string weightsSha256, IReadOnlyList<string> layers, bool l2 = true, int batchSize = 32,
        FeatureCache? cache = null, Preprocessing? preprocessing = null)
    {
        if (layers.Count == 0) throw new ArgumentException("no layer requested");
        this.model = model;
        this.weightsSha256 = weightsSha256;
        this.l2 = l2;
        this.batchSize = batchSize;
        this.cache = cache;
        p = preprocessing ?? model.Preprocessing;
        taps = layers.Select(model.CanonicalLayer).Distinct().ToArray();
    }

    /// <summary>
    /// On an ILGPU accelerator, decode into page-locked buffers and upload batch i+1 on a second stream while batch i
    /// computes (<see cref="StagedUploads"/>); false: upload each batch from pageable memory when its pass starts.
    /// The host backend reads the loader's buffers directly either way.
    /// </summary>
    public bool Overlap { get; init; } = true;

    /// <summary>The first layer's name as features record it (a tap's own spelling, e.g. relu7).</summary>
    public string Layer => taps[0];
    /// <summary>Every layer's name as features record it, in the order asked, without repeats.</summary>
    public IReadOnlyList<string> Layers => taps;
    public Preprocessing Preprocessing => p;
    public int Dimension => DimensionOf(Layer);
    public int DimensionOf(string layer) => (int)model.LayerShape(layer, 1, p.Size).PerSample;

    /// <summary>The features of the first layer (the only one for an extractor made with one layer).</summary>
    public FeatureSet Extract(IReadOnlyList<DatasetItem> items, IReadOnlyList<string> classes,
        Action<ExtractProgress>? progress = null, CancellationToken cancellation = default)
        => ExtractLayers(items, classes, progress, cancellation)[Layer];

    /// <summary>
    /// The features of every layer, keyed by <see cref="Layers"/>; each set holds the same images (those that decoded)
    /// in the same order. Each layer's <see cref="ExtractionStats.Cached"/> counts its own rows read from the cache;
    /// the network time and decode rates are those of the one shared pass.
    /// </summary>
    public IReadOnlyDictionary<string, FeatureSet> ExtractLayers(IReadOnlyList<DatasetItem> items, IReadOnlyList<string> classes,
        Action<ExtractProgress>? progress = null, CancellationToken cancellation = default)
    {
        var clock = Stopwatch.StartNew();
        int n = items.Count, layers = taps.Length;
        var d = taps.Select(DimensionOf).ToArray();
        var raw = d.Select(dim => new float[(long)n * dim]).ToArray();
        var have = new bool[layers, n];
        var hashes = new string?[n];
        var skipped = new List<SkippedFile>();

        // Content hashes first: they key the cache. An unreadable file is skipped here with its reason.
        Parallel.For(0, n, new ParallelOptions { CancellationToken = cancellation }, i =>
        {
            try
            {
                hashes[i] = FeatureCache.HashFile(items[i].Path);
                if (cache != null)
                    for (int l = 0; l < layers; l++)
                        have[l, i] = cache.TryRead(hashes[i]!, weightsSha256, taps[l], raw[l].AsSpan(i * d[l], d[l]));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                hashes[i] = null;
            }
        });
        foreach (var i in Enumerable.Range(0, n).Where(i => hashes[i] == null))
            skipped.Add(new SkippedFile(items[i].Path, "cannot read the file"));
        var hit = (bool[,])have.Clone();
        bool AllCached(int i) => Enumerable.Range(0, layers).All(l => have[l, i]);
        int cached = Enumerable.Range(0, n).Count(AllCached);
        progress?.Invoke(new(cached, n, clock.Elapsed.TotalSeconds));

        var todo = Enumerable.Range(0, n).Where(i => !AllCached(i) && hashes[i] != null).ToArray();
        var indexOf = new Dictionary<DatasetItem, Queue<int>>();
        foreach (var i in todo)
        {
            if (!indexOf.TryGetValue(items[i], out var q)) indexOf[items[i]] = q = new Queue<int>();
            q.Enqueue(i);
        }
        var computed = new bool[n];
        double computeSeconds = 0;
        BatchLoaderStats? decodeStats = null;
        int done = cached;
        if (todo.Length > 0)
        {
            var profiler = model.Profiler;
            using var stager = Overlap && model.Device is IlgpuDevice gpu
                ? new StagedUploads(gpu, (long)batchSize * p.TensorLength) { Profiler = profiler } : null;
            var loader = new BatchLoader(todo.Select(i => items[i]).ToList(), p, batchSize, allocate: stager != null ? stager.AllocatePinned : null)
            {
                Trace = profiler,
            };
            var batches = stager != null
                ? StageAhead(loader.ReadBatches(cancellation), stager, p.TensorLength)
                : loader.ReadBatches(cancellation).Select(b => (Batch: b, Staged: (DeviceTensor?)null));
            foreach (var (batch, staged) in batches)
            {
                using (batch)
                {
                    // A prefetched batch is ready at once; stop here rather than compute the batches already decoded.
                    cancellation.ThrowIfCancellationRequested();
                    if (batch.Count > 0)
                    {
                        long t0 = Stopwatch.GetTimestamp();
                        var f = model.Forward(batch.Data.AsSpan(0, batch.Count * p.TensorLength), batch.Count, p.Size, p.Size, taps, staged);
                        profiler.SpanSince($"batch {batch.Index} forward", "pipeline", t0,
                            new Dictionary<string, object> { ["images"] = batch.Count, ["staged"] = staged != null });
                        computeSeconds += Stopwatch.GetElapsedTime(t0).TotalSeconds;
                        for (int j = 0; j < batch.Count; j++)
                        {
                            int i = indexOf[batch.Items[j]].Dequeue();
                            computed[i] = true;
                            for (int l = 0; l < layers; l++)
                            {
                                if (have[l, i]) continue;
                                var row = f[taps[l]].AsSpan(j * d[l], d[l]);
                                row.CopyTo(raw[l].AsSpan(i * d[l], d[l]));
                                have[l, i] = true;
                                cache?.Write(hashes[i]!, weightsSha256, taps[l], row);
                            }
                        }
                    }
                    done += batch.Count;
                    progress?.Invoke(new(done, n, clock.Elapsed.TotalSeconds));
                }
            }
            skipped.AddRange(loader.Skipped);
            decodeStats = loader.Stats;
        }

        // An image is kept when every layer has its row (from the cache, or from the pass: it decoded).
        var keep = Enumerable.Range(0, n).Where(AllCached).ToArray();
        var skippedSorted = skipped.OrderBy(s => s.Path, StringComparer.Ordinal).ToList();
        var paths = keep.Select(i => items[i].Path).ToArray();
        var labels = keep.Select(i => items[i].Label).ToArray();
        int network = computed.Count(c => c);
        double seconds = clock.Elapsed.TotalSeconds;
        var sets = new Dictionary<string, FeatureSet>(StringComparer.Ordinal);
        for (int l = 0; l < layers; l++)
        {
            int dim = d[l];
            var x = new float[(long)keep.Length * dim];
            for (int r = 0; r < keep.Length; r++)
            {
                var row = x.AsSpan(r * dim, dim);
                raw[l].AsSpan(keep[r] * dim, dim).CopyTo(row);
                if (l2) Normalize(row);
            }
            int fromCache = keep.Count(i => hit[l, i]);
            var stats = new ExtractionStats(n, fromCache, keep.Length - fromCache, seconds, computeSeconds,
                decodeStats?.ImagesPerWorkerSecond ?? 0, decodeStats?.Workers ?? 0, computeSeconds > 0 ? network / computeSeconds : 0);
            sets[taps[l]] = new FeatureSet(x, keep.Length, dim, paths, labels, classes, taps[l], l2, weightsSha256, skippedSorted, stats);
        }
        return sets;
    }

    /// <summary>
    /// Batches with their input already on the device: batch i+1's upload is started on the copy stream before batch i
    /// is handed out, so it runs while batch i computes; batch i is handed out once its own upload is done.
    /// </summary>
    static IEnumerable<(Batch Batch, DeviceTensor? Staged)> StageAhead(IEnumerable<Batch> batches, StagedUploads stager, int tensorLength)
    {
        using var e = batches.GetEnumerator();
        if (!e.MoveNext()) yield break;
        var current = e.Current;
        int slot = 0;
        stager.Start(slot, current.Data, current.Count * tensorLength);
        while (true)
        {
            var staged = stager.Wait(slot);
            Batch? next = e.MoveNext() ? e.Current : null;
            if (next != null) stager.Start(1 - slot, next.Data, next.Count * tensorLength);
            yield return (current, staged);
            if (next == null) yield break;
            current = next;
            slot = 1 - slot;
        }
    }

    /// <summary>x / ||x||_2 (norm accumulated in double); a zero row stays zero, as sklearn's normalize leaves it.</summary>
    public static void Normalize(Span<float> row)
    {
        double ss = 0;
        foreach (var v in row) ss += (double)v * v;
        if (ss == 0) return;
        float inv = (float)(1.0 / Math.Sqrt(ss));
        for (int i = 0; i < row.Length; i++) row[i] *= inv;
    }
}
