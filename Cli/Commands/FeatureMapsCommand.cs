using System.CommandLine;
using Tp7.Engine.Imaging;
using Tp7.Engine.Model;
using Tp7.Engine.Reporting;

namespace Tp7.Cli.Commands;

/// <summary>`tp7 featuremaps`: the input beside a grid of one layer's feature maps, as a PNG.</summary>
static class FeatureMapsCommand
{
    public static Command Create()
    {
        var image = new Argument<string>("image") { Description = "Image file" };
        var layer = new Option<string>("--layer") { Description = "Convolutional tap (conv1_1, relu1_1, pool1, ...)", DefaultValueFactory = _ => "conv1_1" };
        var output = new Option<string>("--out") { Description = "PNG to write", Required = true };
        var max = new Option<int>("--max") { Description = "At most this many maps", DefaultValueFactory = _ => 64 };
        var weights = CliCommon.Weights();
        var command = new Command("featuremaps", "Draw one layer's feature maps for an image") { image, layer, output, max, weights };
        var device = new DeviceOptions(command);
        command.SetHandler(parse =>
        {
            var path = parse.GetValue(image)!;
            var spec = Vgg16Architecture.Layer(parse.GetValue(layer)!);
            var p = Preprocessing.ImageNet;
            var shape = Vgg16Architecture.OutputShapes(p.Size, p.Size)[spec.Position];
            if (shape.H == 1 && shape.W == 1)
                throw new ArgumentException($"{spec.Tap} is a vector of {shape.C} values, not feature maps; pick a convolutional or pooling layer");
            var resized = ImageLoader.LoadResized(path, p);
            var input = new float[p.TensorLength];
            ImageLoader.ToTensor(resized, p, input);
            using var session = ModelSession.Open(parse, device, weights);
            var maps = session.Model.Forward(input, 1, p.Size, p.Size, [spec.Tap])[spec.Tap];
            var outPath = parse.GetValue(output)!;
            string weightsNote = session.RandomWeights ? "RANDOM weights" : Path.GetFileName(session.WeightsDescription);
            FeatureMapFigure.Save(outPath, resized.Pixels, p.Size, p.Size, maps, shape.C, shape.H, shape.W, spec.Tap,
                $"{Path.GetFileName(path)}, VGG16 {spec.Module} ({weightsNote}), {session.Device.Name}", parse.GetValue(max));
            Console.WriteLine($"wrote {outPath}: {Math.Min(shape.C, parse.GetValue(max))} of {shape.C} maps of {spec.Tap} ({shape.H}x{shape.W})");
            return 0;
        });
        return command;
    }
}
