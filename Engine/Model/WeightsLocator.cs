using Tp7.Engine.IO;

namespace Tp7.Engine.Model;

/// <summary>
/// Finds and loads VGG16 weights, the same way for every verb and from any folder:
/// <list type="number">
/// <item>the file an option names (--weights, finetune's --init); an error when it does not exist;</item>
/// <item>$TP7_WEIGHTS: a weights file, or a folder holding vgg16.safetensors or vgg16-random-seed0.safetensors; an
/// error when it is neither;</item>
/// <item>weights/ of the repository: ./weights, then weights/ at the root of the checkout the program was built in;</item>
/// <item>the user cache: $TP7_CACHE/weights when TP7_CACHE is set, else ~/.cache/tp7/weights (where
/// tools/convert_weights.py writes when it runs outside the repository).</item>
/// </list>
/// In 3 and 4, ImageNet weights (vgg16.safetensors) in any folder come before random-init ones. When nothing is
/// found, <see cref="Locate"/> returns null and the verb draws torchvision's random init (seed 0) in memory, loudly.
/// </summary>
public static class WeightsLocator
{
    public const string Pretrained = "vgg16.safetensors";
    public const string RandomInit = "vgg16-random-seed0.safetensors";
    public const string EnvironmentVariable = "TP7_WEIGHTS";

    public const string HowToGet =
        "get ImageNet weights with 'python3 tools/convert_weights.py --download vgg16' (needs internet), " +
        "or make random-init ones with '/usr/bin/python3 tools/convert_weights.py --random-init --seed 0'";

    /// <summary>A weights file and what led to it ("--weights", "TP7_WEIGHTS", "weights/ of the repository", "the user cache").</summary>
    public sealed record Located(string Path, string Origin);

    /// <summary>
    /// The weights file to load: <paramref name="explicitPath"/> when given (<paramref name="option"/> names it in the
    /// error when it does not exist), else the lookup above; null when no file exists anywhere.
    /// </summary>
    public static Located? Locate(string? explicitPath, string option = "--weights")
    {
        if (explicitPath != null)
            return File.Exists(explicitPath) ? new Located(explicitPath, option)
                : throw new FileNotFoundException(Directory.Exists(explicitPath)
                    ? $"{option} {explicitPath}: a folder; give the weights file (e.g. {System.IO.Path.Combine(explicitPath, Pretrained)})"
                    : $"{option} {explicitPath}: no such weights file");
        if (Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } env)
        {
            if (File.Exists(env)) return new Located(env, EnvironmentVariable);
            if (!Directory.Exists(env)) throw new FileNotFoundException($"{EnvironmentVariable}={env}: no such file or folder");
            foreach (var name in new[] { Pretrained, RandomInit })
                if (File.Exists(System.IO.Path.Combine(env, name))) return new Located(System.IO.Path.Combine(env, name), EnvironmentVariable);
            throw new FileNotFoundException($"{EnvironmentVariable}={env}: the folder holds neither {Pretrained} nor {RandomInit}");
        }
        var folders = LocalFolders("weights").Select(f => (f, "weights/ of the repository")).Append((UserCache(), "the user cache")).ToList();
        foreach (var name in new[] { Pretrained, RandomInit })
            foreach (var (folder, origin) in folders)
            {
                var path = System.IO.Path.Combine(folder, name);
                if (File.Exists(path)) return new Located(path, origin);
            }
        return null;
    }

    /// <summary>$TP7_CACHE/weights, else ~/.cache/tp7/weights (the feature cache is the features/ folder beside it).</summary>
    public static string UserCache()
        => System.IO.Path.Combine(Environment.GetEnvironmentVariable("TP7_CACHE") is { Length: > 0 } env
            ? env : System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "tp7"), "weights");

    /// <summary>The folders searched without TP7_WEIGHTS, in order: ./weights, the repository's weights/, the user cache.</summary>
    public static IEnumerable<string> SearchFolders() => LocalFolders("weights").Append(UserCache());

    /// <summary>./<paramref name="name"/>, then <paramref name="name"/> at the root of the repository above the program
    /// (the folder holding Tp7.Native.sln), so `dotnet run` and a built tp7 find weights/ and data/ alike.</summary>
    public static IEnumerable<string> LocalFolders(string name)
    {
        yield return System.IO.Path.Combine(Directory.GetCurrentDirectory(), name);
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "Tp7.Native.sln")))
            {
                yield return System.IO.Path.Combine(dir.FullName, name);
                yield break;
            }
    }

    /// <summary>The weights file the lookup finds without an option, or null.</summary>
    public static string? FindDefault() => Locate(null)?.Path;

    /// <summary>True when the file holds torchvision's random initialisation rather than trained weights.</summary>
    public static bool IsRandomInit(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        return file.Metadata.TryGetValue("source", out var s) && s.Contains("random", StringComparison.OrdinalIgnoreCase)
               || Path.GetFileName(path).Contains("random", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>Loads and verifies all 32 tensors against the architecture (every mismatch named at once); refuses NaN and Inf.</summary>
    public static Vgg16Weights Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such weights file; {HowToGet}");
        using var file = SafeTensorsFile.Open(path);
        int classes = HeadRows(file);
        TensorSpecCheck.Verify(file, Vgg16Architecture.ParameterSpecsFor(classes));
        var tensors = Vgg16Architecture.ParameterSpecsFor(classes).ToDictionary(p => p.Key, p =>
        {
            var values = file.ReadFloat32(p.Key);
            FiniteCheck.Require(path, p.Key, values, p.Shape);
            return values;
        });
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
