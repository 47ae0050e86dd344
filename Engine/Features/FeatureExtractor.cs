using System.Diagnostics;
using Tp7.Engine.Data;
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
/// Deep features at a named layer for a list of images: decoding on all cores runs ahead of the network (bounded
/// queue), features already in the cache are not recomputed, and every new feature is cached as soon as its batch
/// is done (so an interrupted run resumes).
/// </summary>
/// <param name="layer">A tap alias or value name of the model; null: the model's default feature layer.</param>
public sealed class FeatureExtractor(ImageModel model, string weightsSha256, string? layer, bool l2 = true, int batchSize = 32,
    FeatureCache? cache = null, Preprocessing? preprocessing = null)
{
    readonly Preprocessing p = preprocessing ?? model.Preprocessing;
    readonly string tap = model.CanonicalLayer(layer ?? model.DefaultLayer);

    /// <summary>The layer's name as features record it (a tap's own spelling, e.g. relu7).</summary>
    public string Layer => tap;
    public Preprocessing Preprocessing => p;
    public int Dimension => (int)model.LayerShape(tap, 1, p.Size).PerSample;

    public FeatureSet Extract(IReadOnlyList<DatasetItem> items, IReadOnlyList<string> classes,
        Action<ExtractProgress>? progress = null, CancellationToken cancellation = default)
    {
        var clock = Stopwatch.StartNew();
        int d = Dimension, n = items.Count;
        var raw = new float[(long)n * d];
        var have = new bool[n];
        var hashes = new string?[n];
        var skipped = new List<SkippedFile>();

        // Content hashes first: they key the cache. An unreadable file is skipped here with its reason.
        Parallel.For(0, n, new ParallelOptions { CancellationToken = cancellation }, i =>
        {
            try
            {
                hashes[i] = FeatureCache.HashFile(items[i].Path);
                if (cache != null && cache.TryRead(hashes[i]!, weightsSha256, tap, raw.AsSpan(i * d, d))) have[i] = true;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                hashes[i] = null;
            }
        });
        foreach (var i in Enumerable.Range(0, n).Where(i => hashes[i] == null))
            skipped.Add(new SkippedFile(items[i].Path, "cannot read the file"));
        int cached = have.Count(h => h);
        progress?.Invoke(new(cached, n, clock.Elapsed.TotalSeconds));

        var todo = Enumerable.Range(0, n).Where(i => !have[i] && hashes[i] != null).ToArray();
        var indexOf = new Dictionary<DatasetItem, Queue<int>>();
        foreach (var i in todo)
        {
            if (!indexOf.TryGetValue(items[i], out var q)) indexOf[items[i]] = q = new Queue<int>();
            q.Enqueue(i);
        }
        double computeSeconds = 0;
        BatchLoaderStats? decodeStats = null;
        int done = cached;
        if (todo.Length > 0)
        {
            var loader = new BatchLoader(todo.Select(i => items[i]).ToList(), p, batchSize);
            foreach (var batch in loader.ReadBatches(cancellation))
            {
                using (batch)
                {
                    // A prefetched batch is ready at once; stop here rather than compute the batches already decoded.
                    cancellation.ThrowIfCancellationRequested();
                    if (batch.Count > 0)
                    {
                        long t0 = Stopwatch.GetTimestamp();
                        var f = model.Forward(batch.Data.AsSpan(0, batch.Count * p.TensorLength), batch.Count, p.Size, p.Size, [tap])[tap];
                        computeSeconds += Stopwatch.GetElapsedTime(t0).TotalSeconds;
                        for (int j = 0; j < batch.Count; j++)
                        {
                            int i = indexOf[batch.Items[j]].Dequeue();
                            var row = f.AsSpan(j * d, d);
                            row.CopyTo(raw.AsSpan(i * d, d));
                            have[i] = true;
                            cache?.Write(hashes[i]!, weightsSha256, tap, row);
                        }
                    }
                    done += batch.Count;
                    progress?.Invoke(new(done, n, clock.Elapsed.TotalSeconds));
                }
            }
            skipped.AddRange(loader.Skipped);
            decodeStats = loader.Stats;
        }

        var keep = Enumerable.Range(0, n).Where(i => have[i]).ToArray();
        var x = new float[(long)keep.Length * d];
        for (int r = 0; r < keep.Length; r++)
        {
            var row = x.AsSpan(r * d, d);
            raw.AsSpan(keep[r] * d, d).CopyTo(row);
            if (l2) Normalize(row);
        }
        var stats = new ExtractionStats(n, cached, keep.Length - cached,
            clock.Elapsed.TotalSeconds, computeSeconds, decodeStats?.ImagesPerWorkerSecond ?? 0, decodeStats?.Workers ?? 0,
            computeSeconds > 0 ? (keep.Length - cached) / computeSeconds : 0);
        return new FeatureSet(x, keep.Length, d, keep.Select(i => items[i].Path).ToArray(), keep.Select(i => items[i].Label).ToArray(),
            classes, tap, l2, weightsSha256, skipped.OrderBy(s => s.Path, StringComparer.Ordinal).ToList(), stats);
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
