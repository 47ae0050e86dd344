using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Tp7.Engine.Data;
using Tp7.Engine.IO;

namespace Tp7.Engine.Features;

/// <summary>
/// Shard <see cref="Index"/> of <see cref="Count"/> of a listing of N images: the contiguous block of items
/// [floor(Index·N/Count), floor((Index+1)·N/Count)). The blocks of 0..Count−1 cover the listing once, in order, and
/// differ in size by at most one; a shard is empty when there are fewer images than shards.
/// </summary>
public readonly record struct Shard
{
    public int Index { get; }
    public int Count { get; }

    public Shard(int index, int count)
    {
        if (count < 1) throw new ArgumentException($"a shard count must be at least 1, got {count}");
        if (index < 0 || index >= count) throw new ArgumentException($"shard {index}/{count}: the index must be from 0 to {count - 1}");
        Index = index;
        Count = count;
    }

    /// <summary>The listing items [Start, End) of a listing of <paramref name="n"/> items (products in 64 bits).</summary>
    public (int Start, int End) Range(int n) => ((int)((long)Index * n / Count), (int)((long)(Index + 1) * n / Count));

    public IReadOnlyList<T> Slice<T>(IReadOnlyList<T> listing)
    {
        var (start, end) = Range(listing.Count);
        return [.. Enumerable.Range(start, end - start).Select(i => listing[i])];
    }

    public override string ToString() => $"{Index}/{Count}";

    /// <summary>"i/n" with 0 ≤ i &lt; n; null and the reason when the text is not one.</summary>
    public static Shard? TryParse(string text, out string? why)
    {
        why = null;
        var parts = text.Split('/');
        if (parts.Length != 2 || !TryInt(parts[0], out int i) || !TryInt(parts[1], out int n))
        {
            why = $"'{text}' is not a shard: write INDEX/COUNT, e.g. 0/4 for the first of four";
            return null;
        }
        if (n < 1) { why = $"'{text}': the shard count must be at least 1"; return null; }
        if (i >= n) { why = $"'{text}': the index of a shard of {n} runs from 0 to {n - 1}"; return null; }
        return new Shard(i, n);
    }

    static bool TryInt(string s, out int v) => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out v);
}

/// <summary>
/// Extraction spread over a cluster: which shard a task is (from the command line or its scheduler's environment),
/// what identifies the listing every shard cut from, and joining the shards' feature files back into the file one
/// unsharded extraction writes.
/// </summary>
public static class Sharding
{
    /// <summary>Kubernetes Indexed Jobs set it to the pod's completion index, 0 to completions − 1.</summary>
    public const string KubernetesIndex = "JOB_COMPLETION_INDEX";
    public const string SlurmTaskId = "SLURM_ARRAY_TASK_ID", SlurmTaskMin = "SLURM_ARRAY_TASK_MIN",
        SlurmTaskStep = "SLURM_ARRAY_TASK_STEP", SlurmTaskCount = "SLURM_ARRAY_TASK_COUNT";

    /// <summary>
    /// This task's shard of <paramref name="count"/> from its scheduler's environment. JOB_COMPLETION_INDEX (a Kubernetes
    /// Indexed Job) wins over Slurm's variables, which a pod never has; a Slurm array task is shard
    /// (SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP (MIN 0 and STEP 1 when unset), so
    /// --array=1-8 works as well as 0-7, and SLURM_ARRAY_TASK_COUNT, when set, must equal <paramref name="count"/>.
    /// Every problem is an <see cref="ArgumentException"/> naming the variable and its value.
    /// </summary>
    /// <param name="environment">Reads a variable (null when unset); <see cref="Environment.GetEnvironmentVariable(string)"/> in the CLI.</param>
    /// <param name="countOption">How the user gave the count, for messages (e.g. "--shards 3").</param>
    public static Shard FromEnvironment(int count, Func<string, string?> environment, string countOption)
    {
        if (count < 1) throw new ArgumentException($"{countOption}: the shard count must be at least 1");
        string? Get(string name) => environment(name) is { Length: > 0 } v ? v.Trim() : null;

        if (Get(KubernetesIndex) is { } k)
        {
            int index = Integer(KubernetesIndex, k);
            if (index < 0 || index >= count)
                throw new ArgumentException($"{KubernetesIndex}={k} is outside 0..{count - 1} for {countOption}: the Job's completions must equal the shard count");
            return new Shard(index, count);
        }
        if (Get(SlurmTaskId) is { } id)
        {
            int task = Integer(SlurmTaskId, id);
            int min = Get(SlurmTaskMin) is { } m ? Integer(SlurmTaskMin, m) : 0;
            int step = Get(SlurmTaskStep) is { } s ? Integer(SlurmTaskStep, s) : 1;
            if (step < 1) throw new ArgumentException($"{SlurmTaskStep}={step} must be at least 1");
            if (Get(SlurmTaskCount) is { } c && Integer(SlurmTaskCount, c) != count)
                throw new ArgumentException($"{SlurmTaskCount}={c} but {countOption}: the array must have as many tasks as there are shards " +
                                            $"(#SBATCH --array=0-{count - 1}; to rerun some of them alone, give each --shard INDEX/{count})");
            if (task < min || (task - min) % step != 0 || (task - min) / step >= count)
                throw new ArgumentException($"{SlurmTaskId}={id} ({SlurmTaskMin}={min}, {SlurmTaskStep}={step}) is not one of the {count} tasks of {countOption} " +
                                            $"(#SBATCH --array=0-{count - 1})");
            return new Shard((task - min) / step, count);
        }
        throw new ArgumentException($"{countOption} takes this task's shard from {KubernetesIndex} (a Kubernetes Indexed Job) or {SlurmTaskId} " +
                                    $"(a Slurm job array), and neither is set: outside a scheduler give --shard INDEX/{count}");
    }

    static int Integer(string name, string value)
        => int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int v)
            ? v
            : throw new ArgumentException($"{name}='{value}' is not a task index (a whole number from 0)");

    /// <summary>
    /// What identifies a listing whichever machine lists it: its size and the SHA-256 over each item's path relative to
    /// <paramref name="root"/> (with '/' separators) and label, then the class names. The same dataset mounted at
    /// another root gives the same fingerprint; another split, subset, file or class gives another.
    /// </summary>
    public static FeatureFile.ListingInfo Fingerprint(string root, IReadOnlyList<DatasetItem> listing, IReadOnlyList<string> classes)
    {
        string full = Path.GetFullPath(root);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Add(string line) => sha.AppendData(Encoding.UTF8.GetBytes(line + "\n"));
        foreach (var item in listing)
            Add($"{Path.GetRelativePath(full, item.Path).Replace(Path.DirectorySeparatorChar, '/')}\t{item.Label.ToString(CultureInfo.InvariantCulture)}");
        Add("classes");
        foreach (var c in classes) Add(c);
        return new FeatureFile.ListingInfo(listing.Count, Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant());
    }

    /// <summary>The sidecar's record of a shard of <paramref name="listingSize"/> items.</summary>
    public static FeatureFile.ShardInfo Describe(Shard shard, int listingSize)
    {
        var (start, end) = shard.Range(listingSize);
        return new FeatureFile.ShardInfo(shard.Index, shard.Count, start, end);
    }

    /// <summary>"images 100-199 of the listing" (from 0), "image 7 of the listing", or "no image of the listing" for an empty shard.</summary>
    public static string DescribeRange(int start, int end) => (end - start) switch
    {
        <= 0 => "no image of the listing",
        1 => $"image {start} of the listing",
        _ => $"images {start}-{end - 1} of the listing",
    };

    /// <summary>What <see cref="Merge"/> joined.</summary>
    public sealed record MergeSummary(int Shards, int ListingSize, int Rows, int Dimension, int Skipped, FeatureFile.Sidecar Sidecar);

    /// <summary>
    /// Joins the feature files of every shard of one listing into <paramref name="outNpy"/> (and its sidecar), in listing
    /// order: the same bytes, rows, labels and skipped files as one unsharded extraction writes. Every check runs on the
    /// sidecars and .npy headers before anything is written, each failing in one line that names the files: all from the
    /// same model, weights, layer, normalisation, preprocessing and listing; each shard once; none missing; each file's
    /// rows and skipped images accounting for its block. The rows are streamed from the shards into the output, never
    /// held in memory.
    /// </summary>
    public static MergeSummary Merge(IReadOnlyList<string> shardNpys, string outNpy)
    {
        if (shardNpys.Count == 0) throw new ArgumentException("no shard files given");
        string outFull = Path.GetFullPath(outNpy);
        var parts = new List<Part>();
        foreach (var path in shardNpys)
        {
            if (string.Equals(Path.GetFullPath(path), outFull, StringComparison.Ordinal))
                throw new ArgumentException($"{path} is both a shard and the output; write the merged features to another file");
            if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file", path);
            var side = FeatureFile.ReadSidecar(path);
            var header = FeatureFile.ReadHeader(path, side);
            if (side.Shard is null || side.Listing is null)
                throw new InvalidDataException($"{path}: not a shard (its sidecar records no shard; write shards with 'tp7 extract --shard INDEX/COUNT')");
            if (side.Shard.Count < 1 || side.Shard.Index < 0 || side.Shard.Index >= side.Shard.Count || side.Listing.Images < 0)
                throw new InvalidDataException($"{FeatureFile.SidecarPath(path)}: shard {side.Shard.Index}/{side.Shard.Count} of {side.Listing.Images} images is not a shard");
            parts.Add(new Part(path, side, header));
        }

        var (firstPath, first, firstHeader) = parts[0];
        foreach (var (path, side, header) in parts.Skip(1))
        {
            void Same<T>(string what, T a, T b, Func<T, string>? show = null)
            {
                if (!EqualityComparer<T>.Default.Equals(a, b))
                    throw new InvalidDataException($"{firstPath} and {path} differ in {what} ({(show ?? (v => $"{v}"))(a)} vs {(show ?? (v => $"{v}"))(b)}): they are not shards of one extraction");
            }
            Same("model", first.Model, side.Model);
            Same("weights", first.WeightsSha256, side.WeightsSha256, v => v[..Math.Min(12, v.Length)]);
            Same("layer", first.Layer, side.Layer);
            Same("normalisation", first.L2, side.L2, v => v ? "L2" : "raw");
            Same("preprocessing", FeatureFile.Describe(first.Preprocessing), FeatureFile.Describe(side.Preprocessing));
            Same("listing", first.Listing!, side.Listing!, l => $"{l.Images} images, sha256 {l.Sha256[..Math.Min(12, l.Sha256.Length)]}");
            Same("shard count", first.Shard!.Count, side.Shard!.Count);
            Same("feature size", firstHeader.Shape[1], header.Shape[1]);
        }

        int count = first.Shard!.Count, listingSize = first.Listing!.Images;
        var byIndex = new List<Part>?[count];
        foreach (var part in parts)
        {
            var s = part.Side.Shard!;
            var (start, end) = new Shard(s.Index, count).Range(listingSize);
            if (s.Start != start || s.End != end)
                throw new InvalidDataException($"{part.Path}: shard {s.Index}/{count} records images {s.Start}-{s.End - 1}, but that shard of {listingSize} images is {start}-{end - 1}");
            if (part.Side.Paths.Count + part.Side.Skipped.Count != end - start)
                throw new InvalidDataException($"{part.Path}: {part.Side.Paths.Count} rows and {part.Side.Skipped.Count} skipped images for the {end - start} images of shard {s.Index}/{count}");
            (byIndex[s.Index] ??= []).Add(part);
        }
        var twice = Enumerable.Range(0, count).Where(i => byIndex[i] is { Count: > 1 }).ToList();
        if (twice.Count > 0)
            throw new ArgumentException(string.Join("; ", twice.Select(i => $"shard {i}/{count} given {Times(byIndex[i]!.Count)}: {string.Join(", ", byIndex[i]!.Select(p => p.Path))}")));
        var missing = Enumerable.Range(0, count).Where(i => byIndex[i] is null).ToList();
        if (missing.Count > 0)
        {
            string Missing(int i) { var (a, b) = new Shard(i, count).Range(listingSize); return $"{i}/{count} ({DescribeRange(a, b)})"; }
            throw new ArgumentException(missing.Count == 1
                ? $"shard {Missing(missing[0])} is missing"
                : $"shards {string.Join(", ", missing.Select(Missing))} are missing");
        }

        var ordered = byIndex.Select(b => b![0]).ToList();
        int d = (int)firstHeader.Shape[1];
        long rows = ordered.Sum(p => p.Header.Shape[0]);
        var merged = first with
        {
            Paths = [.. ordered.SelectMany(p => p.Side.Paths)],
            Labels = [.. ordered.SelectMany(p => p.Side.Labels)],
            // One extraction lists its skipped files by path (FeatureExtractor), whichever block they fell in.
            Skipped = [.. ordered.SelectMany(p => p.Side.Skipped).OrderBy(s => s.Path, StringComparer.Ordinal)],
            Shard = null,
        };
        Npy.WriteFloat32(outNpy, [rows, d], output =>
        {
            foreach (var p in ordered)
            {
                using var data = Npy.OpenData(p.Path, p.Header);
                data.CopyTo(output, 1 << 20);
            }
        });
        FeatureFile.WriteSidecar(outNpy, merged);
        return new MergeSummary(count, listingSize, (int)rows, d, merged.Skipped.Count, merged);
    }

    static string Times(int n) => n == 2 ? "twice" : $"{n} times";

    sealed record Part(string Path, FeatureFile.Sidecar Side, Npy.Header Header);
}
