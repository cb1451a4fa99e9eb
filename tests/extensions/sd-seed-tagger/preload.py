def preload(parser):
    parser.add_argument("--seed-tagger-greeting", type=str, default="hello",
                        help="greeting the Seed tagger test extension reports")
