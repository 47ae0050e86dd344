using System.Security.Cryptography;

namespace Tp7.Engine.Features;

/// <summary>
/// Raw (un-normalised) features of single images, keyed by (image content SHA-256, weights SHA-256, layer), one
/// small file per image, written atomically. A second `run` with another C or classifier reads them instead of
/// running the network again, and an interrupted extraction resumes where it stopped.
/// </summary>
public sealed class FeatureCache
{
    public string Root { get; }

    public FeatureCache(string root)
    {
        Root = root;
        Directory.CreateDirectory(root);
    }

    /// <summary>~/.cache/tp7/features, or $TP7_CACHE/features.</summary>
    public static FeatureCache Default()
    {
        var baseDir = Environment.GetEnvironmentVariable("TP7_CACHE") is { Length: > 0 } env
            ? env
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "tp7");
        return new FeatureCache(Path.Combine(baseDir, "features"));
    }

    string PathOf(string contentHash, string weightsHash, string layer)
        => Path.Combine(Root, weightsHash[..Math.Min(16, weightsHash.Length)], layer, contentHash[..2], contentHash + ".f32");

    public bool TryRead(string contentHash, string weightsHash, string layer, Span<float> destination)
    {
        var path = PathOf(contentHash, weightsHash, layer);
        try
        {
            using var f = File.OpenRead(path);
            if (f.Length != destination.Length * 4L) return false;
            f.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(destination));
            return true;
        }
        catch (FileNotFoundException) { return false; }
        catch (DirectoryNotFoundException) { return false; }
        catch (EndOfStreamException) { return false; }
    }

    public void Write(string contentHash, string weightsHash, string layer, ReadOnlySpan<float> feature)
    {
        var path = PathOf(contentHash, weightsHash, layer);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        // Unique across machines too: pods sharing the cache on one volume are all PID 1, and two shards may hold the same image.
        var tmp = $"{path}.{Guid.NewGuid():N}.tmp";
        using (var f = File.Create(tmp)) f.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(feature));
        File.Move(tmp, path, overwrite: true);
    }

    public static string HashFile(string path)
    {
        using var f = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(f)).ToLowerInvariant();
    }
}
