using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Advanced;
using SixLabors.ImageSharp.Formats;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Tiff;
using SixLabors.ImageSharp.Formats.Webp;
using SixLabors.ImageSharp.Memory;
using SixLabors.ImageSharp.Metadata;
using SixLabors.ImageSharp.PixelFormats;

namespace Tp7.Engine.Imaging;

/// <summary>
/// File → RGB → (3, Size, Size) float tensor, matching torchvision's
/// <c>Image.open(p).convert("RGB")</c>, <c>Resize((224, 224))</c>, <c>ToTensor()</c>, <c>Normalize(mean, std)</c>
/// on Pillow 9.x.
/// </summary>
/// <remarks>
/// Colour, as Pillow's <c>convert("RGB")</c> does it: grey → three equal channels; palette → palette
/// lookup (a GIF's transparent index too); alpha (RGBA, LA, palette transparency) dropped without compositing; CMYK JPEG →
/// ImageSharp's CMYK→RGB (Pillow computes (255-C)(255-K)/255 in integers, ImageSharp in float: ±1 level).
/// 16-bit PNG keeps the high byte of each sample, as Pillow's "RGB;16B"/"LA;16B" unpackers do for RGB(A)
/// and grey+alpha. Documented difference: Pillow opens 16-bit grey PNG as mode "I" and its I→RGB
/// conversion clamps the 0..65535 value at 255 (almost every pixel turns white); we keep the high
/// byte there too, which is the image the file holds. No EXIF rotation (Pillow does not rotate either).
/// Every failure becomes an <see cref="ImageDecodeException"/> with a short reason; nothing else escapes.
/// </remarks>
public static class ImageLoader
{
    // Own configuration: the default one is shared process-wide, and we change decoders and
    // parallelism. One decode per core is the batch loader's job, so ImageSharp stays single-threaded.
    private static readonly Configuration DecodingConfiguration = CreateConfiguration();

    private static Configuration CreateConfiguration()
    {
        var c = new Configuration(
            new PngConfigurationModule(), new JpegConfigurationModule(), new GifConfigurationModule(),
            new BmpConfigurationModule(), new TiffConfigurationModule(), new WebpConfigurationModule())
        {
            MaxDegreeOfParallelism = 1,
        };
        // Pillow opens the first frame of an animated GIF or multi-page TIFF; decoding the others wastes memory.
        c.ImageFormatsManager.SetDecoder(GifFormat.Instance, new GifDecoder { DecodingMode = FrameDecodingMode.First });
        c.ImageFormatsManager.SetDecoder(TiffFormat.Instance, new TiffDecoder { DecodingMode = FrameDecodingMode.First });
        return c;
    }

    /// <summary>Decodes a file to full-size RGB.</summary>
    public static Rgb24Image Decode(string path, Preprocessing p)
    {
        using var decoded = Open(path, p);
        var image = new Rgb24Image(decoded.Width, decoded.Height);
        int stride = decoded.Width * 3;
        for (int y = 0; y < decoded.Height; y++)
            decoded.Row(y).CopyTo(image.Pixels.AsSpan(y * stride, stride));
        return image;
    }

    /// <summary>Decodes and resizes to (p.Size, p.Size) RGB uint8: the exact image the network sees,
    /// before normalisation (what a feature-map display should show next to the maps).</summary>
    public static Rgb24Image LoadResized(string path, Preprocessing p)
    {
        using var decoded = Open(path, p);
        var result = new Rgb24Image(p.Size, p.Size);
        Resize(decoded, p.Size, result.Pixels);
        return result;
    }

    /// <summary>Decodes, resizes and normalises into <paramref name="chw"/>, one batch slot of
    /// (3, p.Size, p.Size) float32. With <paramref name="trace"/>, the decode and the preprocessing are spans of it.</summary>
    public static void LoadTensor(string path, Preprocessing p, Span<float> chw, Tp7.Engine.Profiling.ITraceSink? trace = null)
    {
        if (chw.Length != p.TensorLength)
            throw new ArgumentException($"{path}: tensor slot has {chw.Length} floats, expected {p.TensorLength} for (3, {p.Size}, {p.Size})");
        long t0 = trace != null ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
        using var decoded = Open(path, p);
        long t1 = trace != null ? System.Diagnostics.Stopwatch.GetTimestamp() : 0;
        trace?.HostSpan("decode", "data", t0, t1, new Dictionary<string, object> { ["file"] = Path.GetFileName(path) });
        byte[] resized = System.Buffers.ArrayPool<byte>.Shared.Rent(p.Size * p.Size * 3);
        try
        {
            Span<byte> hwc = resized.AsSpan(0, p.Size * p.Size * 3);
            Resize(decoded, p.Size, hwc);
            ToTensor(hwc, p, chw);
            trace?.HostSpan("preprocess", "data", t1, System.Diagnostics.Stopwatch.GetTimestamp());
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(resized);
        }
    }

    /// <summary>A new (3, p.Size, p.Size) float32 tensor for one file.</summary>
    public static float[] LoadTensor(string path, Preprocessing p)
    {
        var chw = new float[p.TensorLength];
        LoadTensor(path, p, chw);
        return chw;
    }

    /// <summary>(Size, Size, 3) uint8 → (3, Size, Size) float32: x / 255, then (x - mean) / std,
    /// in float32 and in that order, as torchvision's ToTensor and Normalize compute it, so the
    /// values are bit-identical to PyTorch's for the same pixels.</summary>
    public static void ToTensor(Rgb24Image resized, Preprocessing p, Span<float> chw)
    {
        if (resized.Width != p.Size || resized.Height != p.Size)
            throw new ArgumentException($"ToTensor: image is {resized.Width}x{resized.Height}, expected {p.Size}x{p.Size}");
        ToTensor(resized.Pixels, p, chw);
    }

    /// <param name="hwc">(p.Size, p.Size, 3) uint8.</param>
    /// <param name="chw">(3, p.Size, p.Size) float32.</param>
    public static void ToTensor(ReadOnlySpan<byte> hwc, Preprocessing p, Span<float> chw)
    {
        int plane = p.Size * p.Size;
        if (hwc.Length != plane * 3)
            throw new ArgumentException($"ToTensor: {hwc.Length} bytes, expected {plane * 3} for {p.Size}x{p.Size} RGB");
        if (chw.Length != plane * 3)
            throw new ArgumentException($"ToTensor: tensor slot has {chw.Length} floats, expected {plane * 3} for (3, {p.Size}, {p.Size})");

        // 256 possible bytes per channel: a table computes each value once, with the exact float ops.
        Span<float> lut = stackalloc float[3 * 256];
        for (int c = 0; c < 3; c++)
            for (int v = 0; v < 256; v++)
                lut[c * 256 + v] = ((float)v / 255f * p.Range - p.Mean[c]) / p.Std[c];

        Span<float> r = chw[..plane], g = chw.Slice(plane, plane), b = chw.Slice(2 * plane, plane);
        for (int i = 0; i < plane; i++)
        {
            r[i] = lut[hwc[3 * i]];
            g[i] = lut[256 + hwc[3 * i + 1]];
            b[i] = lut[512 + hwc[3 * i + 2]];
        }
    }

    private static void Resize(DecodedImage decoded, int size, Span<byte> hwc) =>
        new ResizePil(decoded.Width, decoded.Height, size, size).Apply(decoded.Row, hwc);

    /// <summary>Reads and checks the file, then decodes it; the caller disposes the result.</summary>
    internal static DecodedImage Open(string path, Preprocessing p)
    {
        p.Validate();
        byte[] data = ReadBounded(path, p.MaxFileBytes);

        IImageFormat? format;
        IImageInfo? info;
        try
        {
            info = Image.Identify(DecodingConfiguration, data, out format);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            string fmt = Image.DetectFormat(DecodingConfiguration, data)?.Name ?? "image";
            throw new ImageDecodeException(path, $"corrupt {fmt} header ({Short(e)})", e);
        }
        if (info is null || format is null)
            throw new ImageDecodeException(path, LooksLikeText(data) ? "not an image (text file)" : "not an image (unknown format)");

        string name = format.Name;   // "JPEG", "PNG", "GIF", "BMP", "TIFF", "Webp"
        if (info.Width <= 0 || info.Height <= 0)
            throw new ImageDecodeException(path, $"{name} header gives an empty size {info.Width}x{info.Height}");
        long pixels = (long)info.Width * info.Height;
        if (pixels > p.MaxPixels)
            throw new ImageDecodeException(path, $"{info.Width}x{info.Height} exceeds the {FormatPixels(p.MaxPixels)} limit");

        string? structural = format == JpegFormat.Instance ? ContainerCheck.Jpeg(data)
            : format == PngFormat.Instance ? ContainerCheck.Png(data)
            : null;
        if (structural is not null)
            throw new ImageDecodeException(path, structural);

        if (format == GifFormat.Instance)
            ContainerCheck.GifIgnoreTransparency(data);

        bool sixteenBit = format == PngFormat.Instance && info.Metadata.GetPngMetadata().BitDepth == PngBitDepth.Bit16;
        try
        {
            if (sixteenBit)
                return new DecodedImage(Image.Load<Rgba64>(DecodingConfiguration, data));
            return new DecodedImage(Image.Load<Rgb24>(DecodingConfiguration, data));
        }
        catch (InvalidMemoryOperationException e)
        {
            throw new ImageDecodeException(path, $"{info.Width}x{info.Height} {name}: not enough memory to decode ({Short(e)})", e);
        }
        catch (OutOfMemoryException e)
        {
            throw new ImageDecodeException(path, $"{info.Width}x{info.Height} {name}: not enough memory to decode", e);
        }
        catch (NotSupportedException e)
        {
            throw new ImageDecodeException(path, $"unsupported {name} variant ({Short(e)})", e);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Hostile input can make a decoder fail in ways its authors did not name (index out of
            // range, invalid cast); all of them mean the same thing to the user.
            throw new ImageDecodeException(path, $"corrupt {name} ({Short(e)})", e);
        }
    }

    private static byte[] ReadBounded(string path, long maxBytes)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            long length = stream.Length;
            if (length == 0)
                throw new ImageDecodeException(path, "empty file");
            if (length > maxBytes)
                throw new ImageDecodeException(path, $"file is {length / 1048576.0:0.#} MiB, above the {maxBytes / 1048576.0:0.#} MiB limit");
            var data = new byte[length];
            stream.ReadExactly(data);
            return data;
        }
        catch (ImageDecodeException) { throw; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ImageDecodeException(path, $"cannot read ({e.Message})", e);
        }
    }

    private static bool LooksLikeText(byte[] data)
    {
        int n = Math.Min(data.Length, 512);
        for (int i = 0; i < n; i++)
        {
            byte b = data[i];
            if (b < 0x09 || (b > 0x0D && b < 0x20) || b == 0x7F) return false;
        }
        return true;
    }

    private static string FormatPixels(long pixels) => $"{pixels / 1e6:0.###} Mpx";

    private static string Short(Exception e)
    {
        string m = e.Message.ReplaceLineEndings(" ").Trim();
        return m.Length <= 120 ? m : m[..117] + "...";
    }
}

/// <summary>A decoded ImageSharp image seen as 8-bit RGB rows. 16-bit images keep the high byte of
/// each sample, row by row, so no second full-size copy is made.</summary>
internal sealed class DecodedImage : IDisposable
{
    private readonly Image<Rgb24>? _rgb24;
    private readonly Image<Rgba64>? _rgba64;
    private readonly byte[]? _rowScratch;

    public int Width { get; }
    public int Height { get; }

    public DecodedImage(Image<Rgb24> image)
    {
        _rgb24 = image;
        Width = image.Width;
        Height = image.Height;
    }

    public DecodedImage(Image<Rgba64> image)
    {
        _rgba64 = image;
        Width = image.Width;
        Height = image.Height;
        _rowScratch = new byte[Width * 3];
    }

    /// <summary>Row y as (Width, 3) bytes; for 16-bit images the span is overwritten by the next call.</summary>
    public ReadOnlySpan<byte> Row(int y)
    {
        if (_rgb24 is not null)
            return System.Runtime.InteropServices.MemoryMarshal.AsBytes(_rgb24.DangerousGetPixelRowMemory(y).Span);
        ReadOnlySpan<Rgba64> src = _rgba64!.DangerousGetPixelRowMemory(y).Span;
        byte[] dst = _rowScratch!;
        for (int x = 0; x < src.Length; x++)
        {
            dst[3 * x] = (byte)(src[x].R >> 8);
            dst[3 * x + 1] = (byte)(src[x].G >> 8);
            dst[3 * x + 2] = (byte)(src[x].B >> 8);
        }
        return dst;
    }

    public void Dispose()
    {
        _rgb24?.Dispose();
        _rgba64?.Dispose();
    }
}
