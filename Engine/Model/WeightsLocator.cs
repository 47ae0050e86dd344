using Tp7.Engine.IO;

namespace Tp7.Engine.Model;

/// <summary>Finds and loads VGG16 weights: an explicit file, else the pretrained file, else the random-init one.</summary>
public static class WeightsLocator
{
    public const string Pretrained = "vgg16.safetensors";
    public const string RandomInit = "vgg16-random-seed0.safetensors";

    public const string HowToGet =
        "get ImageNet weights with 'python3 tools/convert_weights.py --download vgg16' (needs internet), " +
        "or make random-init ones with '/usr/bin/python3 tools/convert_weights.py --random-init --seed 0'";

    /// <summary>The weights folders searched: ./weights, then weights/ in the repository the program was built from.</summary>
    public static IEnumerable<string> SearchFolders() => LocalFolders("weights");

    /// <summary>./<paramref name="name"/>, then <paramref name="name"/> at the root of the repository above the program
    /// (the folder holding Tp7.Native.sln), so `dotnet run` and a built tp7 find weights/ and data/ alike.</summary>
    public static IEnumerable<string> LocalFolders(string name)
    {
        yield return Path.Combine(Directory.GetCurrentDirectory(), name);
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Tp7.Native.sln")))
            {
                yield return Path.Combine(dir.FullName, name);
                yield break;
            }
    }

    /// <summary>The default weights file, or null when none exists.</summary>
    public static string? FindDefault()
    {
        foreach (var name in new[] { Pretrained, RandomInit })
            foreach (var folder in SearchFolders())
            {
                var path = Path.Combine(folder, name);
                if (File.Exists(path)) return path;
            }
        return null;
    }

    public static string Resolve(string? path)
        => path ?? FindDefault() ?? throw new FileNotFoundException($"no VGG16 weights found in weights/: {HowToGet}");

    /// <summary>True when the file holds torchvision's random initialisation rather than trained weights.</summary>
    public static bool IsRandomInit(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        return file.Metadata.TryGetValue("source", out var s) && s.Contains("random", StringComparison.OrdinalIgnoreCase)
               || Path.GetFileName(path).Contains("random", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Loads and verifies all 32 tensors against the architecture (every mismatch named at once).</summary>
    public static Vgg16Weights Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such weights file; {HowToGet}");
        using var file = SafeTensorsFile.Open(path);
        int classes = HeadRows(file);
        TensorSpecCheck.Verify(file, Vgg16Architecture.ParameterSpecsFor(classes));
        var tensors = Vgg16Architecture.ParameterSpecsFor(classes).ToDictionary(p => p.Key, p => file.ReadFloat32(p.Key));
        return new Vgg16Weights(tensors, path, ClassNames(file));
    }

    /// <summary>Rows of classifier.6 in a file (1,000 when the key is missing: the spec check then names it).</summary>
    public static int HeadRows(SafeTensorsFile file)
        => file.Contains(Vgg16Architecture.HeadWeight) && file.Info(Vgg16Architecture.HeadWeight).Shape is [var rows, _] && rows is > 0 and <= int.MaxValue
            ? (int)rows : Vgg16Architecture.NumClasses;

    /// <summary>
    /// Class names a fine-tuned model carries in its metadata ("classes": a JSON list), or null (ImageNet's 1,000).
    /// </summary>
    public static IReadOnlyList<string>? ClassNames(SafeTensorsFile file)
    {
        if (!file.Metadata.TryGetValue("classes", out var json)) return null;
        try { return System.Text.Json.JsonSerializer.Deserialize<string[]>(json); }
        catch (System.Text.Json.JsonException e) { throw new InvalidDataException($"{file.Path}: metadata 'classes' is not a JSON list of names ({e.Message})"); }
    }
}
