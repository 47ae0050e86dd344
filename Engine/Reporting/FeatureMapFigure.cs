using SkiaSharp;

namespace Tp7.Engine.Reporting;

/// <summary>
/// The lab's figure "what do the first-layer maps show": the network's input beside a grid of one layer's feature
/// maps, each normalised to its own range with the perceptually uniform viridis colour map, labelled with its
/// channel number and range.
/// </summary>
public static class FeatureMapFigure
{
    /// <param name="rgb">The input as the network saw it: (height, width, 3) bytes after resizing.</param>
    /// <param name="maps">One sample's activations (channels, mapH, mapW).</param>
    public static void Save(string path, byte[] rgb, int height, int width, float[] maps, int channels, int mapH, int mapW,
        string layer, string subtitle, int maxMaps = 64)
    {
        int count = Math.Min(channels, maxMaps);
        int cols = (int)Math.Ceiling(Math.Sqrt(count));
        int rows = (count + cols - 1) / cols;
        const int tile = 112, gap = 6, label = 16, margin = 16, titleH = 46;
        int inputSize = Math.Max(224, Math.Min(448, rows * (tile + label + gap)));
        int gridW = cols * (tile + gap), gridH = rows * (tile + label + gap);
        int figW = margin + inputSize + 2 * margin + gridW + margin;
        int figH = titleH + Math.Max(inputSize + label + gap, gridH) + margin;

        using var surface = SKSurface.Create(new SKImageInfo(figW, figH, SKColorType.Rgba8888, SKAlphaType.Premul));
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        using var titleFont = new SKFont(SKTypeface.Default, 20);
        using var textFont = new SKFont(SKTypeface.Default, 12);
        using var ink = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var grey = new SKPaint { Color = new SKColor(90, 90, 90), IsAntialias = true };
        canvas.DrawText($"{layer}: {count} of {channels} feature maps ({mapH}x{mapW}), each scaled to its own range",
            margin, 22, titleFont, ink);
        canvas.DrawText(subtitle, margin, 40, textFont, grey);

        using (var input = RgbBitmap(rgb, height, width))
        {
            var dst = new SKRect(margin, titleH, margin + inputSize, titleH + inputSize * height / (float)width);
            using var img = SKImage.FromBitmap(input);
            canvas.DrawImage(img, dst, new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear));
            canvas.DrawText($"input {width}x{height}", margin, dst.Bottom + 13, textFont, ink);
        }

        var viridis = new ScottPlot.Colormaps.Viridis();
        var lut = Enumerable.Range(0, 256).Select(i => viridis.GetColor(i / 255.0)).ToArray();
        int x0 = margin + inputSize + 2 * margin;
        for (int c = 0; c < count; c++)
        {
            var plane = maps.AsSpan(c * mapH * mapW, mapH * mapW);
            float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
            foreach (var v in plane) { lo = MathF.Min(lo, v); hi = MathF.Max(hi, v); }
            float scale = hi > lo ? 255f / (hi - lo) : 0f;
            using var bmp = new SKBitmap(mapW, mapH, SKColorType.Rgba8888, SKAlphaType.Opaque);
            var pixels = new byte[mapH * mapW * 4];
            for (int i = 0; i < plane.Length; i++)
            {
                var col = lut[(int)Math.Clamp((plane[i] - lo) * scale, 0f, 255f)];
                pixels[4 * i] = col.R; pixels[4 * i + 1] = col.G; pixels[4 * i + 2] = col.B; pixels[4 * i + 3] = 255;
            }
            System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bmp.GetPixels(), pixels.Length);
            int r = c / cols, q = c % cols;
            float tx = x0 + q * (tile + gap), ty = titleH + r * (tile + label + gap);
            using var mapImage = SKImage.FromBitmap(bmp);
            // Nearest-neighbour: each activation stays a visible square at deep layers (14x14 maps).
            canvas.DrawImage(mapImage, new SKRect(tx, ty, tx + tile, ty + tile), new SKSamplingOptions(SKFilterMode.Nearest));
            canvas.DrawText(hi > lo ? $"#{c}  {lo:0.##}..{hi:0.##}" : $"#{c}  constant {lo:0.##}", tx, ty + tile + 12, textFont, ink);
        }

        using var image = surface.Snapshot();
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        var tmp = path + ".tmp";
        using (var f = File.Create(tmp)) data.SaveTo(f);
        File.Move(tmp, path, overwrite: true);
    }

    static SKBitmap RgbBitmap(byte[] rgb, int height, int width)
    {
        var bmp = new SKBitmap(width, height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var pixels = new byte[height * width * 4];
        for (int i = 0; i < height * width; i++)
        {
            pixels[4 * i] = rgb[3 * i]; pixels[4 * i + 1] = rgb[3 * i + 1]; pixels[4 * i + 2] = rgb[3 * i + 2]; pixels[4 * i + 3] = 255;
        }
        System.Runtime.InteropServices.Marshal.Copy(pixels, 0, bmp.GetPixels(), pixels.Length);
        return bmp;
    }
}
