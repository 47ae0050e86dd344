using System.Text.Json;
using System.Text.Json.Serialization;
using Tp7.Engine.Data;
using Tp7.Engine.Imaging;
using Tp7.Engine.IO;

namespace Tp7.Engine.Features;

/// <summary>
/// Features on disk: FEATS.npy (float32 (N, D), readable by numpy) and FEATS.json beside it with the row order,
/// labels, class names, layer, normalisation, weights SHA-256, preprocessing and skipped files, the listing the rows
/// came from and, for a shard of it, which one. Both written atomically.
/// </summary>
public static class FeatureFile
{
    public sealed record Sidecar(
        [property: JsonPropertyName("format")] string Format,
        [property: JsonPropertyName("version")] int Version,
        [property: JsonPropertyName("layer")] string Layer,
        [property: JsonPropertyName("l2_normalized")] bool L2,
        [property: JsonPropertyName("weights_sha256")] string WeightsSha256,
        [property: JsonPropertyName("classes")] IReadOnlyList<string> Classes,
        [property: JsonPropertyName("paths")] IReadOnlyList<string> Paths,
        [property: JsonPropertyName("labels")] IReadOnlyList<int> Labels,
        [property: JsonPropertyName("preprocessing")] PreprocessingInfo Preprocessing,
        [property: JsonPropertyName("skipped")] IReadOnlyList<SkippedInfo> Skipped)
    {
        [JsonPropertyName("model")] public string Model { get; init; } = "vgg16";

        /// <summary>The listing extracted (null in files written before listings were recorded).</summary>
        [JsonPropertyName("listing"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public ListingInfo? Listing { get; init; }

        /// <summary>Which block of the listing these rows are (null: the whole listing).</summary>
        [JsonPropertyName("shard"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public ShardInfo? Shard { get; init; }
    }

    /// <param name="Images">Items in the listing, skipped ones included.</param>
    /// <param name="Sha256">See <see cref="Sharding.Fingerprint"/>: the same on every machine that lists the same dataset.</param>
    public sealed record ListingInfo(
        [property: JsonPropertyName("images")] int Images,
        [property: JsonPropertyName("sha256")] string Sha256);

    /// <param name="Start">First listing item of the shard.</param>
    /// <param name="End">One past its last item.</param>
    public sealed record ShardInfo(
        [property: JsonPropertyName("index")] int Index,
        [property: JsonPropertyName("count")] int Count,
        [property: JsonPropertyName("start")] int Start,
        [property: JsonPropertyName("end")] int End);

    public sealed record PreprocessingInfo(
        [property: JsonPropertyName("size")] int Size,
        [property: JsonPropertyName("resize")] string Resize,
        [property: JsonPropertyName("mean")] float[] Mean,
        [property: JsonPropertyName("std")] float[] Std,
        [property: JsonPropertyName("range")] float Range = 1f);

    public sealed record SkippedInfo([property: JsonPropertyName("path")] string Path, [property: JsonPropertyName("reason")] string Reason);

    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    public static string SidecarPath(string npyPath) => Path.ChangeExtension(npyPath, ".json");

    /// <summary>Preprocessing as one comparable line (the record's arrays compare by reference).</summary>
    public static string Describe(PreprocessingInfo p)
        => FormattableString.Invariant($"size {p.Size}, {p.Resize}, mean {string.Join(",", p.Mean)}, std {string.Join(",", p.Std)}, range {p.Range}");

    /// <param name="model">The network the features come from (vgg16, resnet18, an .onnx file), recorded in the sidecar.</param>
    /// <param name="listing">The listing <paramref name="f"/> was extracted from (all of it, or the block <paramref name="shard"/> says).</param>
    public static void Write(string npyPath, FeatureSet f, Preprocessing? preprocessing = null, string? model = null,
        ListingInfo? listing = null, ShardInfo? shard = null)
    {
        var p = preprocessing ?? Preprocessing.ImageNet;
        var dir = Path.GetDirectoryName(Path.GetFullPath(npyPath));
        if (dir != null) Directory.CreateDirectory(dir);
        Npy.Write(npyPath, f.X, f.N, f.D);
        var side = new Sidecar("tp7-features", 1, f.Layer, f.L2, f.WeightsSha256, f.Classes, f.Paths, f.Labels,
            new PreprocessingInfo(p.Size, $"PIL-compatible bilinear (antialiased when shrinking), RGB, /255{(p.Range != 1 ? $" x {p.Range}" : "")}", p.Mean, p.Std, p.Range),
            f.Skipped.Select(s => new SkippedInfo(s.Path, s.Reason)).ToList()) { Model = model ?? "vgg16", Listing = listing, Shard = shard };
        WriteSidecar(npyPath, side);
    }

    /// <summary>Writes the sidecar of <paramref name="npyPath"/> atomically.</summary>
    public static void WriteSidecar(string npyPath, Sidecar side)
    {
        var json = SidecarPath(npyPath);
        File.WriteAllText(json + ".tmp", JsonSerializer.Serialize(side, Json));
        File.Move(json + ".tmp", json, overwrite: true);
    }

    public static FeatureSet Read(string npyPath)
    {
        var side = ReadSidecar(npyPath);
        var (x, shape) = Npy.ReadFloat32(npyPath);
        if (shape.Length != 2) throw new InvalidDataException($"{npyPath}: shape [{string.Join(", ", shape)}], expected (N, D)");
        int n = (int)shape[0], d = (int)shape[1];
        CheckRows(npyPath, side, n);
        return new FeatureSet(x, n, d, side.Paths.ToArray(), side.Labels.ToArray(), side.Classes, side.Layer, side.L2, side.WeightsSha256,
            side.Skipped.Select(s => new SkippedFile(s.Path, s.Reason)).ToList(), new ExtractionStats(n, n, 0, 0, 0, 0, 0, 0));
    }

    /// <summary>The .npy header of features whose sidecar is <paramref name="side"/>, checked against it, without reading the rows.</summary>
    public static Npy.Header ReadHeader(string npyPath, Sidecar side)
    {
        var h = Npy.ReadHeader(npyPath);
        if (h.Shape.Length != 2 || h.DType != Npy.DType.Float32)
            throw new InvalidDataException($"{npyPath}: {Npy.Descr(h.DType)} of shape [{string.Join(", ", h.Shape)}], expected float32 (N, D) as 'tp7 extract' writes");
        CheckRows(npyPath, side, h.Shape[0]);
        return h;
    }

    static void CheckRows(string npyPath, Sidecar side, long n)
    {
        var json = SidecarPath(npyPath);
        if (side.Paths.Count != n || side.Labels.Count != n)
            throw new InvalidDataException($"{json}: {side.Paths.Count} paths and {side.Labels.Count} labels for {n} rows in {npyPath}");
        if (side.Labels.Any(l => l < 0 || l >= side.Classes.Count))
            throw new InvalidDataException($"{json}: a label is outside the {side.Classes.Count} classes");
    }

    /// <summary>The sidecar beside <paramref name="npyPath"/>, checked to be one 'tp7 extract' writes.</summary>
    public static Sidecar ReadSidecar(string npyPath)
    {
        if (!npyPath.EndsWith(".npy", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"{npyPath}: features are read from the .npy file that 'tp7 extract' wrote (its .json sidecar is found beside it)");
        var json = SidecarPath(npyPath);
        if (!File.Exists(json)) throw new FileNotFoundException($"{json}: missing (the row labels and classes of {npyPath}); write features with 'tp7 extract'");
        Sidecar side;
        try
        {
            side = JsonSerializer.Deserialize<Sidecar>(File.ReadAllText(json))
                   ?? throw new InvalidDataException("empty document");
        }
        catch (JsonException e) { throw new InvalidDataException($"{json}: not a tp7 features sidecar ({e.Message})"); }
        if (side.Format != "tp7-features") throw new InvalidDataException($"{json}: format '{side.Format}', expected 'tp7-features'");
        return side;
    }
}
