using System.CommandLine;
var root = new RootCommand("tp7: transfer learning with VGG16 on our own kernels");
return root.Parse(args).Invoke();
