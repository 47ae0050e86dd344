using System.CommandLine;
using Tp7.Engine.Imaging;
using Tp7.Engine.Model;
using Tp7.Engine.Reporting;

namespace Tp7.Cli.Commands;

/// <summary>`tp7 featuremaps`: the input beside a grid of one layer's feature maps, as a PNG (any 4-D value of the model).</summary>
static class FeatureMapsCommand
{
    public static Command Create()
    {
        var image = new Argument<string>("image") { Description = "Image file" };
        var layer = new Option<string?>("--layer") { Description = "A 4-D layer: VGG16 taps conv1_1 (default), relu1_1, pool1, ...; other models: any value name (default: the first convolution's output)" };
        var output = new Option<string>("--out") { Description = "PNG to write (its folder is created)", Required = true }.Writable();
        var max = new Option<int>("--max") { Description = "At most this many maps", DefaultValueFactory = _ => 64 }.AtLeast(1);
        var command = new Command("featuremaps", "Draw one layer's feature maps for an image") { image, layer, output, max };
        var model = new ModelOptions(command);
        var device = new DeviceOptions(command);
        command.SetHandler(parse =>
        {
            var path = parse.GetValue(image)!;
            OptionChecks.RequireImageFiles([path]);
            model.Check(parse);
            string tap = "";
            Tp7.Engine.Graph.Shape shape = default;
            using var session = ModelSession.Open(parse, device, model, check: (graph, pre) =>
            {
                tap = ImageModel.CanonicalLayer(graph, parse.GetValue(layer) ?? (graph.Aliases.Any(a => a.Alias == "conv1_1") ? "conv1_1" : graph.Nodes.First(n => n.Op == "Conv").Outputs[0]));
                shape = ImageModel.Layers(graph, pre.Size).First(r => r.Value == graph.Resolve(tap)).Output;
                if (shape.Rank != 4 || shape[2] == 1 && shape[3] == 1)
                    throw new ArgumentException($"{tap} is a vector of {shape.PerSample} values, not feature maps; pick a convolutional or pooling layer");
            });
            var m = session.Model;
            var p = session.Preprocessing;
            var resized = ImageLoader.LoadResized(path, p);
            var input = new float[p.TensorLength];
            ImageLoader.ToTensor(resized, p, input);
            var maps = m.Forward(input, 1, p.Size, p.Size, [tap])[tap];
            var outPath = parse.GetValue(output)!;
            string weightsNote = session.RandomWeights ? "RANDOM weights" : Path.GetFileName(session.WeightsDescription.Split(' ')[0]);
            string node = m.Graph.Producer(m.Resolve(tap))?.Name ?? tap;
            FeatureMapFigure.Save(OptionChecks.CreateParent(outPath), resized.Pixels, p.Size, p.Size, maps, shape[1], shape[2], shape[3], tap,
                $"{Path.GetFileName(path)}, {m.Name} {node} ({weightsNote}), {session.Device.Name}", parse.GetValue(max));
            Console.WriteLine($"wrote {outPath}: {Math.Min(shape[1], parse.GetValue(max))} of {shape[1]} maps of {tap} ({shape[2]}x{shape[3]})");
            return 0;
        });
        return command;
    }
}
