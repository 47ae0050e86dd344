namespace Tp7.Engine.Imaging;

/// <summary>An 8-bit RGB image in one contiguous buffer: Pixels is (Height, Width, 3), R G B interleaved.</summary>
public sealed class Rgb24Image
{
    public int Width { get; }
    public int Height { get; }
    public byte[] Pixels { get; }

    public Rgb24Image(int width, int height)
        : this(width, height, new byte[checked((long)width * height * 3)]) { }

    public Rgb24Image(int width, int height, byte[] pixels)
    {
        if (width <= 0 || height <= 0)
            throw new ArgumentException($"image size {width}x{height}: both sides must be positive");
        long expected = (long)width * height * 3;
        if (pixels.LongLength != expected)
            throw new ArgumentException($"image {width}x{height} RGB needs {expected} bytes, got {pixels.LongLength}");
        Width = width;
        Height = height;
        Pixels = pixels;
    }

    public ReadOnlySpan<byte> Row(int y) => Pixels.AsSpan(y * Width * 3, Width * 3);
}
