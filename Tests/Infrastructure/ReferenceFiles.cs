using Tp7.Engine.IO;

namespace Tp7.Tests.Infrastructure;

/// <summary>
/// PyTorch's reference for the layer tests, made by tools/ into the test cache (never the repository): VGG16 weights
/// with torchvision's random initialisation (seed 0), activations of every tap for the two photos scikit-learn ships
/// at 224x224, and for a seeded random batch at 32x32 (with gradients, for the backward pass).
/// Regenerated when the scripts change (their hash is part of the file names).
/// </summary>
public sealed class ReferenceFiles
{
    public const string FormatVersion = "1";

    public string Weights { get; }
    public string Photos224 { get; }
    public string Random32 { get; }
    /// <summary>A seeded batch of 2 at 224x224 with every gradient (made on first use: PyTorch's backward takes a while).</summary>
    public string Random224 => random224.Value;
    readonly Lazy<string> random224;
    public string[] Photos { get; } = [Path.Combine(RepoPaths.SklearnImages, "china.jpg"), Path.Combine(RepoPaths.SklearnImages, "flower.jpg")];

    public ReferenceFiles()
    {
        string w = RepoPaths.ScriptsHash("convert_weights.py", "tp7_safetensors.py");
        // Random biases: torchvision initialises every bias to 0, which would hide a dropped or misrouted bias.
        Weights = Python.Cached(Path.Combine(RepoPaths.Cache, $"vgg16-random-seed0-biases-{w}.safetensors"),
            "convert_weights.py", "--random-init", "--seed", "0", "--random-biases", "--out", Path.Combine(RepoPaths.Cache, $"vgg16-random-seed0-biases-{w}.safetensors"));
        string r = w + RepoPaths.ScriptsHash("make_reference.py");
        foreach (var photo in Photos)
            if (!File.Exists(photo)) throw new FileNotFoundException($"{photo}: missing; install python3-sklearn (bash tools/test.sh does)");
        Photos224 = Path.Combine(RepoPaths.Cache, $"ref-photos-224-{r}.safetensors");
        Python.Cached(Photos224, "make_reference.py", ["--weights", Weights, "--images", .. Photos, "--grads", "none", "--out", Photos224]);
        Random32 = Path.Combine(RepoPaths.Cache, $"ref-random-32-{r}.safetensors");
        Python.Cached(Random32, "make_reference.py", "--weights", Weights, "--random-batch", "2", "--size", "32", "--seed", "0",
            "--grads", "all", "--out", Random32);
        string r224 = Path.Combine(RepoPaths.Cache, $"ref-random-224-{r}.safetensors");
        random224 = new(() => Python.Cached(r224, "make_reference.py", "--weights", Weights, "--random-batch", "2", "--size", "224", "--seed", "1",
            "--grads", "all", "--out", r224));
    }

    /// <summary>Opens a reference file, checking its format version names the script to re-run on mismatch.</summary>
    public static SafeTensorsFile Open(string path)
    {
        var file = SafeTensorsFile.Open(path);
        if (!file.Metadata.TryGetValue("format_version", out var v) || v != FormatVersion)
        {
            file.Dispose();
            throw new InvalidOperationException(
                $"{path}: reference format version {v ?? "(none)"}, the tests read {FormatVersion}: re-run tools/make_reference.py (delete the file to regenerate it)");
        }
        return file;
    }
}

[CollectionDefinition("reference")]
public sealed class ReferenceCollection : ICollectionFixture<ReferenceFiles>;
