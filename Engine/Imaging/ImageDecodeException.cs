namespace Tp7.Engine.Imaging;

/// <summary>A file that cannot become an RGB tensor. <see cref="Reason"/> is short and stable enough
/// to list in a report ("truncated JPEG", "empty file", "6000x40000 exceeds the 64 Mpx limit").</summary>
public sealed class ImageDecodeException : Exception
{
    public string Path { get; }
    public string Reason { get; }

    public ImageDecodeException(string path, string reason, Exception? inner = null)
        : base($"{path}: {reason}", inner)
    {
        Path = path;
        Reason = reason;
    }
}
